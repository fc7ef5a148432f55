// The SQL token scanner: PostgreSQL's lexical rules for strings, quotes, comments and numbers.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "routing/sql_lexer.hpp"

using pgmux::routing::SqlLexer;
using pgmux::routing::Token;
using pgmux::routing::TokenKind;
using pgmux::routing::word_is;

namespace {

std::vector<Token> lex_all(std::string_view sql, SqlLexer* out = nullptr) {
  SqlLexer lex(sql);
  std::vector<Token> tokens;
  for (Token t = lex.next(); t.kind != TokenKind::End; t = lex.next()) tokens.push_back(t);
  if (out != nullptr) *out = lex;
  return tokens;
}

std::vector<std::string> texts(std::string_view sql) {
  std::vector<std::string> out;
  for (const Token& t : lex_all(sql)) out.emplace_back(t.text);
  return out;
}

using Texts = std::vector<std::string>;

}  // namespace

TEST_CASE("lexer: words, punctuation and operators") {
  CHECK(texts("SELECT a, b FROM t;") == Texts{"SELECT", "a", ",", "b", "FROM", "t", ";"});
  CHECK(texts("x::int[] >= $12") == Texts{"x", ":", ":", "int", "[", "]", ">=", "$12"});
  CHECK(texts("a$b c_1 _d") == Texts{"a$b", "c_1", "_d"});
  const auto tokens = lex_all("f(1)");
  REQUIRE(tokens.size() == 4);
  CHECK(tokens[0].kind == TokenKind::Word);
  CHECK(tokens[1].kind == TokenKind::LParen);
  CHECK(tokens[2].kind == TokenKind::Number);
  CHECK(tokens[3].kind == TokenKind::RParen);
  CHECK(lex_all("$7")[0].kind == TokenKind::Param);
}

TEST_CASE("lexer: word_is ignores ASCII case only") {
  CHECK(word_is("SeLeCt", "select"));
  CHECK_FALSE(word_is("selec", "select"));
  CHECK_FALSE(word_is("selectx", "select"));
}

TEST_CASE("lexer: comments are skipped, nested block comments included") {
  CHECK(texts("a -- b ; c\n d") == Texts{"a", "d"});
  CHECK(texts("a /* b /* c */ d ; */ e") == Texts{"a", "e"});
  CHECK(texts("1 +-- x\n 2") == Texts{"1", "+", "2"});  // an operator ends where a comment starts
  CHECK(texts("1 */* x */ 2") == Texts{"1", "*", "2"});
  CHECK(texts("-- only").empty());
}

TEST_CASE("lexer: string forms") {
  CHECK(texts("'a''b' x") == Texts{"'a''b'", "x"});
  CHECK(texts("E'a\\'b' x") == Texts{"E'a\\'b'", "x"});
  CHECK(texts("e'\\\\' x") == Texts{"e'\\\\'", "x"});
  CHECK(texts("B'01' X'ff' N'n' U&'\\0041' x") == Texts{"B'01'", "X'ff'", "N'n'", "U&'\\0041'", "x"});
  CHECK(texts("ee'x'") == Texts{"ee", "'x'"});  // only a one-letter prefix makes an E string
  CHECK(lex_all("'x'")[0].kind == TokenKind::String);
}

TEST_CASE("lexer: dollar quotes") {
  CHECK(texts("$$ a ; ' $$ x") == Texts{"$$ a ; ' $$", "x"});
  CHECK(texts("$t$ $$ ; $t$ x") == Texts{"$t$ $$ ; $t$", "x"});
  CHECK(texts("$a$x$ab$y$a$ z") == Texts{"$a$x$ab$y$a$", "z"});
  CHECK(texts("a$$ b") == Texts{"a$$", "b"});  // '$' continues an identifier
  CHECK(lex_all("$q$x$q$")[0].kind == TokenKind::String);
}

TEST_CASE("lexer: quoted identifiers") {
  CHECK(texts("\"a \"\" b\" x") == Texts{"\"a \"\" b\"", "x"});
  CHECK(texts("U&\"d\\0061t\" x") == Texts{"U&\"d\\0061t\"", "x"});
  CHECK(lex_all("\"select\"")[0].kind == TokenKind::QuotedIdent);
}

TEST_CASE("lexer: numbers give back an incomplete exponent, like scan.l") {
  CHECK(texts("1e5 1.5e-3 .5 7") == Texts{"1e5", "1.5e-3", ".5", "7"});
  CHECK(texts("1e'x'") == Texts{"1", "e'x'"});
  CHECK(texts("1e+") == Texts{"1", "e", "+"});
}

TEST_CASE("lexer: the primary hint lives in comments only") {
  SqlLexer a("");
  lex_all("SELECT 1 /* pgmux:primary */", &a);
  CHECK(a.primary_hint());
  SqlLexer b("");
  lex_all("-- PgMux:Primary please\nSELECT 1", &b);
  CHECK(b.primary_hint());
  SqlLexer c("");
  lex_all("SELECT '/* pgmux:primary */', $$-- pgmux:primary$$, \"pgmux:primary\"", &c);
  CHECK_FALSE(c.primary_hint());
}

TEST_CASE("lexer: errors stop the scan") {
  for (std::string_view bad : {"'abc", "E'abc\\'", "\"abc", "$$abc", "$x$abc$y$", "/* a /* b */"}) {
    CAPTURE(bad);
    SqlLexer lex("");
    lex_all(bad, &lex);
    CHECK(lex.error() != nullptr);
  }
  const std::string with_nul("SELECT 1\0; DELETE FROM t", 24);
  SqlLexer lex("");
  lex_all(with_nul, &lex);
  CHECK(lex.error() != nullptr);
}

TEST_CASE("lexer: a backslash that standard_conforming_strings = off would read differently is an error") {
  SqlLexer ok("");
  lex_all("'C:\\path' 'a\\b'", &ok);
  CHECK(ok.error() == nullptr);
  SqlLexer bad("");
  lex_all("'a\\'' ; x --'", &bad);
  CHECK(bad.error() != nullptr);
  SqlLexer unicode("");
  lex_all("U&'\\0041'", &unicode);
  CHECK(unicode.error() == nullptr);
}

// SJIS "表" is 0x95 0x5C: PostgreSQL converts the text from the client encoding before reading it, so that 0x5C is
// no backslash there, while a UTF-8 session's 0x5C after a multibyte character is one.
TEST_CASE("lexer: a backslash byte a multibyte character may end in, before a quote or backslash, is an error") {
  for (std::string_view bad : {"select E'\x95\\'; set role r2; --'", "select E'\x95\\\\'; set role r2; --'",
                               "select '\x95\\'; set role r2; --'"}) {
    CAPTURE(bad);
    SqlLexer lex("");
    lex_all(bad, &lex);
    CHECK(lex.error() != nullptr);
  }
  // Where the string ends is the same in every encoding: a backslash before another character, or after ASCII.
  for (std::string_view fine : {"select E'caf\xc3\xa9\\n'", "select E'\x95\\n' , 1", "select E'a\\'b'",
                                "select 'caf\xc3\xa9\\n'"}) {
    CAPTURE(fine);
    SqlLexer lex("");
    lex_all(fine, &lex);
    CHECK(lex.error() == nullptr);
  }
}

// Reading::Standard reads as PostgreSQL does by default (standard_conforming_strings on, an encoding without
// backslash bytes in its characters): the strict reading's ambiguities are strings like any other there.
TEST_CASE("lexer: the standard reading ends strings where a default session does") {
  const auto standard_texts = [](std::string_view sql, SqlLexer* out) {
    SqlLexer lex(sql, pgmux::routing::Reading::Standard);
    std::vector<std::string> texts;
    for (Token t = lex.next(); t.kind != TokenKind::End; t = lex.next()) texts.emplace_back(t.text);
    *out = lex;
    return texts;
  };
  SqlLexer lex("");
  CHECK(standard_texts("select 'a\\''; set role r2; --'", &lex) ==
        std::vector<std::string>{"select", "'a\\''; set role r2; --'"});
  CHECK(lex.error() == nullptr);
  CHECK(standard_texts("select 'C:\\'; set role r2", &lex) ==
        std::vector<std::string>{"select", "'C:\\'", ";", "set", "role", "r2"});
  CHECK(standard_texts("select E'\x95\\'; set role r2; --'", &lex) ==
        std::vector<std::string>{"select", "E'\x95\\'; set role r2; --'"});
  CHECK(lex.error() == nullptr);
  // The strict reading's errors there are ambiguities; an unterminated string is an error in both.
  for (std::string_view ambiguous : {"select 'C:\\'", "select E'\x95\\'; x --'"}) {
    CAPTURE(ambiguous);
    lex_all(ambiguous, &lex);
    CHECK(lex.ambiguous());
  }
  lex_all("select 'x", &lex);
  CHECK(lex.error() != nullptr);
  CHECK_FALSE(lex.ambiguous());
  standard_texts("select 'C:\\' || 'x", &lex);
  CHECK(lex.error() != nullptr);
}
