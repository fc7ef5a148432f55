#include "routing/literal_shape.hpp"

#include <cstring>
#include <functional>

namespace pgmux::routing {

namespace {

constexpr size_t kMaxText = 8192;  // longer texts are classified afresh: the pass would cost what it saves

// A byte that continues a word: a digit after it belongs to the word (PostgreSQL's identifier characters,
// with any byte of a multibyte character).
bool continues_word(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
         c >= 0x80;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The bytes where write_shape's copy stops: digits, and '"' (present only in texts with quoted identifiers).
struct StopBytes {
  bool stop[256] = {};
  constexpr StopBytes() {
    for (int c = '0'; c <= '9'; ++c) stop[c] = true;
    stop[static_cast<unsigned char>('"')] = true;
  }
};
constexpr StopBytes kStops;

// Something that could hold a '"' that is not a quoted identifier's: a string, a comment, a dollar quote.
bool may_hide_quotes(std::string_view sql) {
  return sql.find_first_of("'$") != std::string_view::npos || sql.find("--") != std::string_view::npos ||
         sql.find("/*") != std::string_view::npos;
}

// Writes the shape of `sql` at `o` (digits not continuing a word become one '#', quoted identifiers taken as they
// are); returns the end of what was written. A '"' here always opens or closes a quoted identifier: literal_shape
// refused the texts where a string, a comment or a dollar quote could hold one.
char* write_shape(std::string_view sql, char* o) {
  const char* const begin = sql.data();
  const char* const end = begin + sql.size();
  const char* p = begin;
  bool in_quotes = false;  // inside "...": a doubled "" inside toggles twice, which comes out the same
  while (p < end) {
    // Up to the next digit (or quote) in one copy: most of a statement is words, blanks and punctuation.
    const char* q = p;
    while (q < end && !kStops.stop[static_cast<unsigned char>(*q)]) ++q;
    std::memcpy(o, p, static_cast<size_t>(q - p));
    o += q - p;
    if (q == end) break;
    if (*q == '"') {
      in_quotes = !in_quotes;
      *o++ = '"';
      p = q + 1;
      continue;
    }
    const char* digits_end = q;
    while (digits_end < end && is_digit(*digits_end)) ++digits_end;
    const bool literal = !in_quotes && (q == begin || !continues_word(static_cast<unsigned char>(q[-1])));
    if (literal) {
      *o++ = '#';
    } else {
      std::memcpy(o, q, static_cast<size_t>(digits_end - q));
      o += digits_end - q;
    }
    p = digits_end;
  }
  return o;
}

}  // namespace

bool literal_shape(std::string_view sql, std::string& out, uint64_t& hash) {
  if (sql.size() > kMaxText) return false;
  if (sql.find('"') != std::string_view::npos && may_hide_quotes(sql)) return false;
  out.resize(sql.size());  // the shape is never longer than the text; the buffer's capacity is kept
  char* const start = out.data();
  out.resize(static_cast<size_t>(write_shape(sql, start) - start));
  hash = std::hash<std::string_view>{}(out);
  return true;
}

}  // namespace pgmux::routing
