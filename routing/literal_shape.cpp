#include "routing/literal_shape.hpp"

#include <bit>
#include <cstring>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace pgmux::routing {

namespace {

constexpr size_t kMaxText = 8192;  // longer texts are classified afresh: the pass would cost what it saves
constexpr size_t kBlock = 16;      // the text is read and the shape written this many bytes at a time

// A byte that continues a word: a digit after it belongs to the word (PostgreSQL's identifier characters,
// with any byte of a multibyte character).
bool continues_word(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
         c >= 0x80;
}

// One bit per byte of the kBlock bytes at p (bit i for p[i]): which are digits, and which are '"'.
struct BlockBits {
  unsigned digits = 0;
  unsigned quotes = 0;
};

BlockBits block_bits(const char* p) {
#ifdef __SSE2__
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i bias = _mm_set1_epi8(static_cast<char>(0x80 - '0'));  // '0'..'9' -> -128..-119, signed
  const __m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, bias), _mm_set1_epi8(static_cast<char>(-128 + 10)));
  return {static_cast<unsigned>(_mm_movemask_epi8(digit)),
          static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"'))))};
#else
  BlockBits bits;
  for (unsigned i = 0; i < kBlock; ++i) {
    bits.digits |= static_cast<unsigned>(p[i] >= '0' && p[i] <= '9') << i;
    bits.quotes |= static_cast<unsigned>(p[i] == '"') << i;
  }
  return bits;
#endif
}

// Copies up to 15 bytes with a few fixed-size moves, not a call (overlapping when n is not a power of two).
void copy_short(char* to, const char* from, size_t n) {
  if (n >= 8) {
    std::memcpy(to, from, 8);
    std::memcpy(to + n - 8, from + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(to, from, 4);
    std::memcpy(to + n - 4, from + n - 4, 4);
  } else if (n > 0) {
    to[0] = from[0];
    to[n / 2] = from[n / 2];
    to[n - 1] = from[n - 1];
  }
}

// The text, read kBlock bytes at a time at any offset up to its end: a block that would run past the end is
// read from a copy of the text's last bytes followed by zeros (neither a digit nor a quote), so no read leaves
// the text and no byte is looked at twice by a scalar loop.
class BlockReader {
 public:
  explicit BlockReader(std::string_view text) : text_(text) {
    const size_t n = text.size();
    tail_base_ = n >= kBlock ? n - kBlock : 0;
    if (n >= kBlock) {
      std::memcpy(tail_, text.data() + tail_base_, kBlock);
    } else {
      copy_short(tail_, text.data(), n);
    }
  }
  const char* at(size_t pos) const {
    return pos + kBlock <= text_.size() ? text_.data() + pos : tail_ + (pos - tail_base_);
  }
  // A bit for the text's end in a block at pos, when it lies within it: the scans stop there.
  unsigned end_bit(size_t pos) const {
    const size_t left = text_.size() - pos;
    return left < kBlock ? 1u << left : 0u;
  }

 private:
  std::string_view text_;
  size_t tail_base_ = 0;
  alignas(kBlock) char tail_[2 * kBlock] = {};
};

// Something that could hold a '"' that is not a quoted identifier's: a string, a comment, a dollar quote.
bool may_hide_quotes(std::string_view sql) {
  return sql.find_first_of("'$") != std::string_view::npos || sql.find("--") != std::string_view::npos ||
         sql.find("/*") != std::string_view::npos;
}

// The end of the run of digits that starts at pos (the zeros past the text's end stop it there).
size_t digits_end(const BlockReader& reader, size_t pos) {
  for (;;) {
    const unsigned other = ~block_bits(reader.at(pos)).digits & 0xFFFFu;
    if (other != 0) return pos + static_cast<unsigned>(std::countr_zero(other));
    pos += kBlock;
  }
}

// Writes the shape of `sql` at `o` (digits not continuing a word become one '#', quoted identifiers taken as they
// are); returns the end of what was written, or nullptr when the text has a '"' next to something that could
// hide one (the '"' could then not be told to open or close a quoted identifier). `o` has room for the text's
// length and kBlock more: each block is stored whole before its stops are looked at (the bytes past a stop are
// overwritten next, or lie in that slack).
char* write_shape(std::string_view sql, char* o) {
  const BlockReader reader(sql);
  const size_t n = sql.size();
  size_t r = 0;
  bool in_quotes = false;  // inside "...": a doubled "" inside toggles twice, which comes out the same
  bool quotes_checked = false;
  for (;;) {
    const char* block = reader.at(r);
    const BlockBits bits = block_bits(block);
    std::memcpy(o, block, kBlock);
    const unsigned stops = bits.digits | bits.quotes | reader.end_bit(r);
    if (stops == 0) {  // words, blanks and punctuation: most of a statement
      r += kBlock;
      o += kBlock;
      continue;
    }
    const auto upto = static_cast<unsigned>(std::countr_zero(stops));
    r += upto;
    o += upto;
    if (r == n) return o;
    if (sql[r] == '"') {
      if (!quotes_checked && may_hide_quotes(sql)) return nullptr;
      quotes_checked = true;
      in_quotes = !in_quotes;
      *o++ = '"';
      ++r;
      continue;
    }
    const size_t end = digits_end(reader, r);
    if (!in_quotes && (r == 0 || !continues_word(static_cast<unsigned char>(sql[r - 1])))) {
      *o++ = '#';
    } else {
      std::memcpy(o, sql.data() + r, end - r);
      o += end - r;
    }
    r = end;
  }
}

// A hash of the `size` bytes at `p`, a word at a time (the buffer has kBlock readable bytes past them; the last
// word is masked to the bytes that count), then mixed so that every bit reaches the low ones the cache indexes
// by. Not collision-free (nor meant to be against a client that makes shapes collide): the cache compares keys,
// so a collision costs a miss, never a wrong class.
uint64_t shape_hash(const char* p, size_t size) {
  constexpr uint64_t kMultiplier = 0x9E3779B97F4A7C15ULL;
  uint64_t h = size * kMultiplier;
  uint64_t word = 0;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::memcpy(&word, p + i, sizeof word);
    h = (h ^ word) * kMultiplier;
  }
  if (const size_t left = size - i; left > 0) {
    std::memcpy(&word, p + i, sizeof word);
    // Only the first `left` bytes count (1..7): the low ones on a little-endian machine, the high ones else.
    word &= std::endian::native == std::endian::little ? (uint64_t{1} << (8 * left)) - 1
                                                       : ~(~uint64_t{0} >> (8 * left));
    h = (h ^ word) * kMultiplier;
  }
  // MurmurHash3's 64-bit finalizer.
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ULL;
  return h ^ (h >> 33);
}

}  // namespace

std::optional<Shape> literal_shape(std::string_view sql, std::string& buffer) {
  if (sql.size() > kMaxText) return std::nullopt;
  // The shape is never longer than the text. The buffer only grows, so a call that fits pays no zero-fill.
  if (buffer.size() < sql.size() + kBlock) buffer.resize(sql.size() + kBlock);
  char* const start = buffer.data();
  const char* const end = write_shape(sql, start);
  if (end == nullptr) return std::nullopt;
  const auto size = static_cast<size_t>(end - start);
  return Shape{std::string_view(start, size), shape_hash(start, size)};
}

}  // namespace pgmux::routing
