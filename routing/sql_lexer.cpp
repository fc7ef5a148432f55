#include "routing/sql_lexer.hpp"

namespace pgmux::routing {
namespace {

constexpr std::string_view kHintTag = "pgmux:primary";

char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// PostgreSQL treats every byte >= 0x80 as an identifier letter (so multibyte names work in any encoding).
bool ident_start(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || u >= 0x80;
}
bool digit(char c) { return c >= '0' && c <= '9'; }
bool ident_cont(char c) { return ident_start(c) || digit(c) || c == '$'; }
bool dollar_tag_cont(char c) { return ident_start(c) || digit(c); }  // no '$' inside a tag
bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool op_char(char c) {
  switch (c) {
    case '~': case '!': case '@': case '#': case '^': case '&': case '|': case '`': case '?':
    case '+': case '-': case '*': case '/': case '%': case '<': case '>': case '=':
      return true;
    default:
      return false;
  }
}

bool contains_hint(std::string_view text) {
  if (text.size() < kHintTag.size()) return false;
  for (size_t i = 0; i + kHintTag.size() <= text.size(); ++i) {
    size_t k = 0;
    while (k < kHintTag.size() && lower_ascii(text[i + k]) == kHintTag[k]) ++k;
    if (k == kHintTag.size()) return true;
  }
  return false;
}

}  // namespace

Token SqlLexer::fail(const char* why) {
  if (error_ == nullptr) error_ = why;
  pos_ = sql_.size();
  return Token{};
}

void SqlLexer::note_comment(size_t begin, size_t end) {
  if (!primary_hint_ && contains_hint(sql_.substr(begin, end - begin))) primary_hint_ = true;
}

void SqlLexer::skip_block_comment() {
  // Block comments nest in PostgreSQL: /* a /* b */ still a comment */.
  const size_t begin = pos_;
  int depth = 0;
  while (pos_ < sql_.size()) {
    if (sql_[pos_] == '/' && pos_ + 1 < sql_.size() && sql_[pos_ + 1] == '*') {
      ++depth;
      pos_ += 2;
    } else if (sql_[pos_] == '*' && pos_ + 1 < sql_.size() && sql_[pos_ + 1] == '/') {
      pos_ += 2;
      if (--depth == 0) {
        note_comment(begin, pos_);
        return;
      }
    } else if (sql_[pos_] == '\0') {
      fail("NUL byte in statement");
      return;
    } else {
      ++pos_;
    }
  }
  fail("unterminated /* comment");
}

void SqlLexer::skip_space_and_comments() {
  while (pos_ < sql_.size() && error_ == nullptr) {
    const char c = sql_[pos_];
    if (space(c)) {
      ++pos_;
    } else if (c == '-' && pos_ + 1 < sql_.size() && sql_[pos_ + 1] == '-') {
      const size_t begin = pos_;
      while (pos_ < sql_.size() && sql_[pos_] != '\n' && sql_[pos_] != '\r') {
        if (sql_[pos_] == '\0') {
          fail("NUL byte in statement");
          return;
        }
        ++pos_;
      }
      note_comment(begin, pos_);
    } else if (c == '/' && pos_ + 1 < sql_.size() && sql_[pos_ + 1] == '*') {
      skip_block_comment();
    } else {
      return;
    }
  }
}

Token SqlLexer::next() {
  skip_space_and_comments();
  if (error_ != nullptr || pos_ >= sql_.size()) return Token{};
  const size_t begin = pos_;
  const char c = sql_[pos_];
  if (ident_start(c)) return scan_word(begin);
  if (digit(c) || (c == '.' && pos_ + 1 < sql_.size() && digit(sql_[pos_ + 1]))) return scan_number(begin);
  switch (c) {
    case '\'':
      return scan_standard_string(begin);
    case '"':
      return scan_quoted_ident(begin);
    case '$':
      return scan_dollar(begin);
    case '(':
      ++pos_;
      return take(TokenKind::LParen, begin);
    case ')':
      ++pos_;
      return take(TokenKind::RParen, begin);
    case ';':
      ++pos_;
      return take(TokenKind::Semicolon, begin);
    case ',': case '.': case ':': case '[': case ']':
      ++pos_;
      return take(TokenKind::Punct, begin);
    case '\0':
      return fail("NUL byte in statement");
    default:
      break;
  }
  if (op_char(c)) return scan_operator(begin);
  ++pos_;
  return take(TokenKind::Other, begin);
}

Token SqlLexer::scan_word(size_t begin) {
  while (pos_ < sql_.size() && ident_cont(sql_[pos_])) ++pos_;
  // One-letter prefixes glued to a quote start a string or identifier: E'..', B'..', X'..', N'..', U&'..'.
  if (pos_ - begin == 1 && pos_ < sql_.size()) {
    const char p = lower_ascii(sql_[begin]);
    const char q = sql_[pos_];
    if (q == '\'') {
      if (p == 'e') return scan_escape_string(begin);
      if (p == 'b' || p == 'x' || p == 'n') return scan_standard_string(begin);
    }
    if (p == 'u' && q == '&' && pos_ + 1 < sql_.size()) {
      if (sql_[pos_ + 1] == '\'') {
        ++pos_;
        return scan_standard_string(begin);
      }
      if (sql_[pos_ + 1] == '"') {
        ++pos_;
        return scan_quoted_ident(begin);
      }
    }
  }
  return take(TokenKind::Word, begin);
}

constexpr const char* kEncodingDependentBackslash =
    "a byte of a multibyte character before a quote or backslash may be a backslash (client_encoding SJIS, BIG5, GBK, "
    "GB18030 or JOHAB)";
constexpr const char* kAmbiguousBackslash = "backslash in string literal is ambiguous";

bool SqlLexer::ambiguous() const { return error_ == kEncodingDependentBackslash || error_ == kAmbiguousBackslash; }

Token SqlLexer::scan_standard_string(size_t begin) {
  // With standard_conforming_strings = on (the default since 9.1) only '' escapes a quote. A server running
  // with it off also treats \' as an escape; if that would end the string elsewhere, the text means
  // different things to different servers and we refuse to guess.
  const size_t open = pos_;
  const bool unicode = open > begin && sql_[open - 1] == '&';  // U&'..' never treats \' as an escape
  size_t i = open + 1;
  bool backslash = false;
  for (;;) {
    if (i >= sql_.size()) return fail("unterminated quoted string");
    const char ch = sql_[i];
    if (ch == '\0') return fail("NUL byte in statement");
    if (ch == '\\' && reading_ == Reading::Strict) {
      backslash = true;
      if (backslash_depends_on_encoding(i)) return fail(kEncodingDependentBackslash);
    }
    if (ch == '\'') {
      if (i + 1 < sql_.size() && sql_[i + 1] == '\'') {
        i += 2;
        continue;
      }
      break;
    }
    ++i;
  }
  const size_t end = i + 1;
  if (backslash && !unicode) {
    size_t j = open + 1;
    for (;;) {
      if (j >= sql_.size()) return fail(kAmbiguousBackslash);
      const char ch = sql_[j];
      if (ch == '\\') {
        j += 2;
        continue;
      }
      if (ch == '\'') {
        if (j + 1 < sql_.size() && sql_[j + 1] == '\'') {
          j += 2;
          continue;
        }
        break;
      }
      ++j;
    }
    if (j + 1 != end) return fail(kAmbiguousBackslash);
  }
  pos_ = end;
  return take(TokenKind::String, begin);
}

// A backslash right after a byte >= 0x80 may be the second byte of a multibyte character in SJIS, BIG5, GBK, GB18030
// or JOHAB (client encodings PostgreSQL converts before reading the text), not a backslash: where the string ends
// then depends on the session's encoding when the next character is a quote or a backslash.
bool SqlLexer::backslash_depends_on_encoding(size_t i) const {
  return i > 0 && static_cast<unsigned char>(sql_[i - 1]) >= 0x80 && i + 1 < sql_.size() &&
         (sql_[i + 1] == '\'' || sql_[i + 1] == '\\');
}

Token SqlLexer::scan_escape_string(size_t begin) {
  size_t i = pos_ + 1;  // past the opening quote
  for (;;) {
    if (i >= sql_.size()) return fail("unterminated quoted string");
    const char ch = sql_[i];
    if (ch == '\0') return fail("NUL byte in statement");
    if (ch == '\\') {
      if (reading_ == Reading::Strict && backslash_depends_on_encoding(i)) return fail(kEncodingDependentBackslash);
      i += 2;
      continue;
    }
    if (ch == '\'') {
      if (i + 1 < sql_.size() && sql_[i + 1] == '\'') {
        i += 2;
        continue;
      }
      break;
    }
    ++i;
  }
  pos_ = i + 1;
  return take(TokenKind::String, begin);
}

Token SqlLexer::scan_quoted_ident(size_t begin) {
  size_t i = pos_ + 1;
  for (;;) {
    if (i >= sql_.size()) return fail("unterminated quoted identifier");
    const char ch = sql_[i];
    if (ch == '\0') return fail("NUL byte in statement");
    if (ch == '"') {
      if (i + 1 < sql_.size() && sql_[i + 1] == '"') {
        i += 2;
        continue;
      }
      break;
    }
    ++i;
  }
  pos_ = i + 1;
  return take(TokenKind::QuotedIdent, begin);
}

Token SqlLexer::scan_dollar(size_t begin) {
  size_t i = pos_ + 1;
  if (i < sql_.size() && digit(sql_[i])) {  // $1: a parameter
    while (i < sql_.size() && digit(sql_[i])) ++i;
    pos_ = i;
    return take(TokenKind::Param, begin);
  }
  if (i < sql_.size() && ident_start(sql_[i])) {
    while (i < sql_.size() && dollar_tag_cont(sql_[i])) ++i;
  }
  if (i >= sql_.size() || sql_[i] != '$') {  // a lone '$': not a quote
    ++pos_;
    return take(TokenKind::Other, begin);
  }
  const std::string_view delimiter = sql_.substr(begin, i + 1 - begin);  // "$tag$" or "$$"
  const size_t close = sql_.find(delimiter, i + 1);
  if (close == std::string_view::npos) return fail("unterminated dollar-quoted string");
  if (sql_.substr(i + 1, close - i - 1).find('\0') != std::string_view::npos) return fail("NUL byte in statement");
  pos_ = close + delimiter.size();
  return take(TokenKind::String, begin);
}

Token SqlLexer::scan_number(size_t begin) {
  while (pos_ < sql_.size() && digit(sql_[pos_])) ++pos_;
  if (pos_ < sql_.size() && sql_[pos_] == '.' && !(pos_ + 1 < sql_.size() && sql_[pos_ + 1] == '.')) {
    ++pos_;
    while (pos_ < sql_.size() && digit(sql_[pos_])) ++pos_;
  }
  if (pos_ < sql_.size() && (sql_[pos_] == 'e' || sql_[pos_] == 'E')) {
    // Only a complete exponent belongs to the number; "1e'x'" is 1 followed by the string E'x', as in scan.l.
    size_t j = pos_ + 1;
    if (j < sql_.size() && (sql_[j] == '+' || sql_[j] == '-')) ++j;
    if (j < sql_.size() && digit(sql_[j])) {
      pos_ = j;
      while (pos_ < sql_.size() && digit(sql_[pos_])) ++pos_;
    }
  }
  return take(TokenKind::Number, begin);
}

Token SqlLexer::scan_operator(size_t begin) {
  // An operator ends where a comment starts: "+--x" is '+' then a comment.
  while (pos_ < sql_.size() && op_char(sql_[pos_])) {
    if (pos_ > begin && pos_ + 1 < sql_.size()) {
      const char a = sql_[pos_];
      const char b = sql_[pos_ + 1];
      if ((a == '-' && b == '-') || (a == '/' && b == '*')) break;
    }
    ++pos_;
  }
  return take(TokenKind::Operator, begin);
}

}  // namespace pgmux::routing
