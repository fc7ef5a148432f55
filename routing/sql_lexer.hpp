// A token scanner that follows PostgreSQL's own lexical rules (scan.l) closely enough to find statement
// boundaries and keywords: comments (-- and nested /* */), standard and E'' strings, dollar quotes, quoted
// identifiers, parameters. It never allocates; tokens are views into the input.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pgmux::routing {

enum class TokenKind : uint8_t {
  Word,         // keyword or unquoted identifier (compare with word_is: case-insensitive)
  QuotedIdent,  // "..." or U&"..." (text includes the quotes)
  String,       // '...', E'...', B'...', X'...', N'...', U&'...', $tag$...$tag$ (text includes delimiters)
  Number,
  Param,        // $1
  Operator,
  LParen,
  RParen,
  Semicolon,
  Punct,        // , . : [ ]
  Other,        // a character PostgreSQL would reject; harmless for classification
  End,
};

struct Token {
  TokenKind kind = TokenKind::End;
  std::string_view text;
};

// True when `word` equals `lower` ignoring ASCII case. `lower` must be lowercase. Inline: the hot path
// calls it for every keyword it looks for.
inline bool word_is(std::string_view word, std::string_view lower) {
  if (word.size() != lower.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    // Setting bit 0x20 lowercases ASCII letters; only letters may match that way.
    const char c = word[i];
    if (c != lower[i] && !(c >= 'A' && c <= 'Z' && static_cast<char>(c | 0x20) == lower[i])) return false;
  }
  return true;
}

// How backslashes in string literals are read.
enum class Reading : uint8_t {
  // As every server reads them, whatever its standard_conforming_strings and the client encoding: a backslash
  // that would end a string elsewhere under some setting is an error (SqlLexer::ambiguous()).
  Strict,
  // As PostgreSQL reads them with standard_conforming_strings on and a client encoding in which no character
  // holds a backslash byte (UTF8, LATIN1, EUC_JP...): the reading of every session that changed neither
  // (routing::lexer_may_misread says which may differ).
  Standard,
};

class SqlLexer {
 public:
  explicit SqlLexer(std::string_view sql, Reading reading = Reading::Strict) : sql_(sql), reading_(reading) {}

  // The next token after whitespace and comments; TokenKind::End at the end of input or after an error.
  Token next();

  // A comment containing "pgmux:primary" was skipped so far.
  bool primary_hint() const { return primary_hint_; }

  // Set when the text cannot be scanned safely: unterminated string/comment/identifier, a NUL byte, a backslash in
  // a standard string that would end it elsewhere under standard_conforming_strings = off, or one a multibyte
  // character's byte may be, depending on the client encoding (backslash_depends_on_encoding).
  // Static text; nullptr while everything is fine.
  const char* error() const { return error_; }
  // The error is one only Reading::Strict reports: text the standard reading scans fine.
  bool ambiguous() const;

 private:
  void skip_space_and_comments();
  void skip_block_comment();
  void note_comment(size_t begin, size_t end);
  Token take(TokenKind kind, size_t begin) { return Token{kind, sql_.substr(begin, pos_ - begin)}; }
  Token fail(const char* why);

  Token scan_word(size_t begin);
  bool backslash_depends_on_encoding(size_t i) const;
  Token scan_standard_string(size_t begin);  // pos_ at the opening quote
  Token scan_escape_string(size_t begin);    // pos_ at the opening quote
  Token scan_quoted_ident(size_t begin);     // pos_ at the opening double quote
  Token scan_dollar(size_t begin);
  Token scan_number(size_t begin);
  Token scan_operator(size_t begin);

  std::string_view sql_;
  Reading reading_;
  size_t pos_ = 0;
  bool primary_hint_ = false;
  const char* error_ = nullptr;
};

}  // namespace pgmux::routing
