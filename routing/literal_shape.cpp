#include "routing/literal_shape.hpp"

#include <bit>
#include <cstring>

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

// Room past the text's length that the shape's buffer keeps: copy_to_stop stores whole 16-byte blocks, and
// shape_hash reads whole 8-byte words.
constexpr size_t kSlack = 16;

// Copies [p, end) to `o` up to the first digit or '"' and returns how many bytes that was. Sixteen bytes at a
// time where SSE2 is there (every x86-64): each block is stored whole before it is searched (the bytes after the
// stop are overwritten next or lie in the slack), so the copy costs no call. This scan is most of the shape's
// cost, and the shape is computed for every statement text a client sends.
size_t copy_to_stop(const char* p, const char* end, char* o) {
  const char* const from = p;
#ifdef __SSE2__
  const __m128i bias = _mm_set1_epi8(static_cast<char>(0x80 - '0'));  // '0'..'9' -> -128..-119, signed
  const __m128i ten_above_min = _mm_set1_epi8(static_cast<char>(-128 + 10));
  const __m128i quote = _mm_set1_epi8('"');
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), v);
    const __m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, bias), ten_above_min);
    const int mask = _mm_movemask_epi8(_mm_or_si128(digit, _mm_cmpeq_epi8(v, quote)));
    if (mask != 0) return static_cast<size_t>(p - from) + static_cast<unsigned>(__builtin_ctz(mask));
    p += 16;
    o += 16;
  }
#endif
  while (p < end && !kStops.stop[static_cast<unsigned char>(*p)]) *o++ = *p++;
  return static_cast<size_t>(p - from);
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
    const size_t copied = copy_to_stop(p, end, o);
    const char* q = p + copied;
    o += copied;
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

// A hash of the `size` bytes at `p`, a word at a time (the buffer has kSlack readable bytes past them; the last
// word is masked to the bytes that count). The cache it keys is direct-mapped and compares keys, so a weak hash
// costs a miss, never a wrong class: a client that makes shapes collide can only cost its worker cache misses.
uint64_t shape_hash(const char* p, size_t size) {
  constexpr uint64_t kMultiplier = 0x9E3779B97F4A7C15ULL;
  uint64_t h = size * kMultiplier;
  for (size_t i = 0;; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, sizeof word);
    const size_t left = size - i;
    if (left < 8) {
      // Only the first `left` bytes count (left is 0..7, so no shift reaches 64): the low ones on a little-endian
      // machine, the high ones on a big-endian one.
      word &= std::endian::native == std::endian::little ? (uint64_t{1} << (8 * left)) - 1
                                                         : ~(~uint64_t{0} >> (8 * left));
    }
    h = (h ^ word) * kMultiplier;
    h ^= h >> 29;
    if (left <= 8) return h;
  }
}

}  // namespace

bool literal_shape(std::string_view sql, std::string& out, uint64_t& hash) {
  if (sql.size() > kMaxText) return false;
  if (sql.find('"') != std::string_view::npos && may_hide_quotes(sql)) return false;
  // The shape is never longer than the text; the buffer's capacity is kept from call to call.
  out.resize(sql.size() + kSlack);
  char* const start = out.data();
  const size_t size = static_cast<size_t>(write_shape(sql, start) - start);
  hash = shape_hash(start, size);
  out.resize(size);
  return true;
}

}  // namespace pgmux::routing
