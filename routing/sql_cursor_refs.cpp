#include "routing/sql_cursor_refs.hpp"

#include <vector>

#include "routing/sql_lexer.hpp"
#include "routing/sql_prepared_refs.hpp"

namespace pgmux::routing {
namespace {

bool is_name(const Token& t) { return t.kind == TokenKind::Word || t.kind == TokenKind::QuotedIdent; }
bool is_word(const Token& t, std::string_view word) { return t.kind == TokenKind::Word && word_is(t.text, word); }

// DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH | WITHOUT} HOLD] FOR query: WITH
// HOLD counts only before FOR (after it, the words are the query's).
CursorRef read_declare(const std::vector<Token>& tokens) {
  CursorRef ref;
  if (tokens.size() < 2 || !is_name(tokens[1])) return ref;
  ref.kind = CursorRefKind::Declare;
  ref.name = fold_identifier(tokens[1].text);
  for (size_t i = 2; i < tokens.size() && !is_word(tokens[i], "for"); ++i) {
    if (is_word(tokens[i], "hold") && is_word(tokens[i - 1], "with")) ref.kind = CursorRefKind::DeclareHold;
  }
  return ref;
}

}  // namespace

CursorRef cursor_ref(std::string_view sql) {
  // Read as a session with the default string syntax reads it; a session that may read it otherwise sends such text
  // to the primary as a write of unknown effect (ClientConn::read_as_session_does).
  SqlLexer lexer(sql, Reading::Standard);
  std::vector<Token> tokens;
  for (Token t = lexer.next(); t.kind != TokenKind::End && t.kind != TokenKind::Semicolon; t = lexer.next()) {
    tokens.push_back(t);
  }
  for (Token t = lexer.next(); t.kind != TokenKind::End; t = lexer.next()) {
    if (t.kind != TokenKind::Semicolon) return {};  // another statement follows
  }
  if (lexer.error() != nullptr || tokens.empty()) return {};
  CursorRef ref;
  if (is_word(tokens[0], "declare")) return read_declare(tokens);
  if (is_word(tokens[0], "close") && tokens.size() == 2 && is_name(tokens[1])) {
    ref.kind = is_word(tokens[1], "all") ? CursorRefKind::CloseAll : CursorRefKind::Close;
    if (ref.kind == CursorRefKind::Close) ref.name = fold_identifier(tokens[1].text);
  } else if ((is_word(tokens[0], "fetch") || is_word(tokens[0], "move")) && tokens.size() >= 2 &&
             is_name(tokens.back())) {
    // The cursor's name comes last, whatever direction and FROM / IN stand before it.
    ref.kind = CursorRefKind::Use;
    ref.name = fold_identifier(tokens.back().text);
  }
  return ref;
}

}  // namespace pgmux::routing
