#include "routing/begin_syntax.hpp"

#include "routing/sql_lexer.hpp"

namespace pgmux::routing {

namespace {

// PostgreSQL's grammar for the statement (gram.y: TransactionStmt, TransactionStmtLegacy, transaction_mode_list),
// one token at a time. Keywords are words: a quoted "begin" is an identifier there, and a syntax error.
class BeginReader {
 public:
  explicit BeginReader(std::string_view sql) : lex_(sql) { advance(); }

  const char* read() {
    const char* tag = "BEGIN";
    if (take("begin")) {
      if (!take("work")) take("transaction");
    } else if (take("start") && take("transaction")) {
      tag = "START TRANSACTION";
    } else {
      return nullptr;
    }
    return modes_to_end() ? tag : nullptr;
  }

  // SET TRANSACTION transaction_mode_list: one mode at least (SET TRANSACTION SNAPSHOT is not a mode).
  const char* read_set_transaction() {
    if (!take("set") || !take("transaction") || at_end()) return nullptr;
    return modes_to_end() ? "SET" : nullptr;
  }

 private:
  // Modes separated by commas or blanks, then at most one ';' and the end of the text.
  bool modes_to_end() {
    for (bool first = true; !at_end(); first = false) {
      const bool comma = token_.kind == TokenKind::Punct && token_.text == ",";
      if (comma && first) return false;  // a list starts with a mode
      if (comma) advance();
      if (!mode()) return false;
    }
    if (token_.kind == TokenKind::Semicolon) advance();
    return token_.kind == TokenKind::End && lex_.error() == nullptr;
  }

  bool at_end() const { return token_.kind == TokenKind::End || token_.kind == TokenKind::Semicolon; }
  void advance() { token_ = lex_.next(); }
  bool take(std::string_view keyword) {
    if (token_.kind != TokenKind::Word || !word_is(token_.text, keyword)) return false;
    advance();
    return true;
  }
  // ISOLATION LEVEL {SERIALIZABLE | REPEATABLE READ | READ COMMITTED | READ UNCOMMITTED}, READ {ONLY | WRITE},
  // DEFERRABLE, NOT DEFERRABLE.
  bool mode() {
    if (take("isolation")) {
      if (!take("level")) return false;
      if (take("serializable")) return true;
      if (take("repeatable")) return take("read");
      return take("read") && (take("committed") || take("uncommitted"));
    }
    if (take("read")) return take("only") || take("write");
    if (take("not")) return take("deferrable");
    return take("deferrable");
  }

  SqlLexer lex_;
  Token token_;
};

}  // namespace

const char* well_formed_begin_tag(std::string_view sql) { return BeginReader(sql).read(); }

const char* well_formed_set_transaction_tag(std::string_view sql) { return BeginReader(sql).read_set_transaction(); }

}  // namespace pgmux::routing
