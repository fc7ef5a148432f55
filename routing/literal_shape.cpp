#include "routing/literal_shape.hpp"

#include <cstring>
#include <functional>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

// The first digit or '"' in [p, end), or end. Sixteen bytes at a time where SSE2 is there (every x86-64): this
// scan is most of the shape's cost, and the shape is computed for every statement text a client sends.
const char* find_stop(const char* p, const char* end) {
#ifdef __SSE2__
  const __m128i bias = _mm_set1_epi8(static_cast<char>(0x80 - '0'));  // '0'..'9' -> -128..-119, signed
  const __m128i ten_above_min = _mm_set1_epi8(static_cast<char>(-128 + 10));
  const __m128i quote = _mm_set1_epi8('"');
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, bias), ten_above_min);
    const int mask = _mm_movemask_epi8(_mm_or_si128(digit, _mm_cmpeq_epi8(v, quote)));
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end && !kStops.stop[static_cast<unsigned char>(*p)]) ++p;
  return p;
}

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
    const char* q = find_stop(p, end);
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
