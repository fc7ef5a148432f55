#include "routing/classifier_lexical.hpp"

#include <array>

#include "routing/classifier_rules.hpp"
#include "routing/sql_lexer.hpp"

namespace pgmux::routing {
namespace {

constexpr size_t kHeadTokens = 6;
constexpr size_t kNameMax = 63;  // NAMEDATALEN - 1: PostgreSQL truncates longer identifiers

// What one pass over a statement's tokens learned.
struct StatementScan {
  std::array<Token, kHeadTokens> head{};
  size_t head_count = 0;
  bool has_for = false;       // FOR: locking clause (or SUBSTRING ... FOR, which the parser sorts out)
  bool has_into = false;      // SELECT ... INTO
  bool has_with = false;      // a CTE somewhere
  bool has_analyze = false;   // EXPLAIN ANALYZE
  bool unbalanced = false;    // ';' inside parentheses or unmatched parentheses: only the parser can tell
  bool write_call = false;    // name( where name is a write function
  bool session_lock_call = false;
  int read_mode = -1;         // last READ ONLY (1) / READ WRITE (0)
  bool with_hold = false;     // WITH HOLD before the first FOR (DECLARE ... CURSOR WITH HOLD FOR)
  int copy_direction = -1;    // first top-level FROM (1) / TO (0)

  bool word(size_t i, std::string_view kw) const {
    return i < head_count && head[i].kind == TokenKind::Word && word_is(head[i].text, kw);
  }
  bool is(size_t i, TokenKind kind) const { return i < head_count && head[i].kind == kind; }
};

void check_call(const Token& name_token, const Classifier& classifier, StatementScan& s) {
  std::array<char, kNameMax> buf{};
  std::string_view name;
  if (name_token.kind == TokenKind::Word) {
    // Unquoted names fold to lowercase (and are truncated like the server does).
    const size_t n = name_token.text.size() < kNameMax ? name_token.text.size() : kNameMax;
    for (size_t i = 0; i < n; ++i) {
      const char c = name_token.text[i];
      buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    name = std::string_view(buf.data(), n);
  } else {
    // "name": case-sensitive, taken as written. U&"..." names are not matched (escapes not decoded).
    const std::string_view t = name_token.text;
    if (t.size() < 2 || t.front() != '"') return;
    name = t.substr(1, t.size() - 2);
  }
  bool session_lock = false;
  if (classifier.is_write_function(name, &session_lock)) {
    s.write_call = true;
    s.session_lock_call = s.session_lock_call || session_lock;
  }
}

// Records the keywords that matter for the decision. Dispatches on length first: most words are
// identifiers that match nothing, and this runs for every one of them.
void note_word(std::string_view w, const Token& prev, int depth, bool& seen_for, StatementScan& s) {
  const bool prev_word = prev.kind == TokenKind::Word;
  switch (w.size()) {
    case 2:
      if (depth == 0 && s.copy_direction < 0 && word_is(w, "to")) s.copy_direction = 0;
      break;
    case 3:
      if (word_is(w, "for")) {
        s.has_for = true;
        seen_for = true;
      }
      break;
    case 4:
      if (word_is(w, "into")) {
        s.has_into = true;
      } else if (word_is(w, "with")) {
        s.has_with = true;
      } else if (word_is(w, "from")) {
        if (depth == 0 && s.copy_direction < 0) s.copy_direction = 1;
      } else if (word_is(w, "hold")) {
        if (!seen_for && prev_word && word_is(prev.text, "with")) s.with_hold = true;
      } else if (word_is(w, "only")) {
        if (prev_word && word_is(prev.text, "read")) s.read_mode = 1;
      }
      break;
    case 5:
      if (prev_word && word_is(w, "write") && word_is(prev.text, "read")) s.read_mode = 0;
      break;
    case 7:
      if (word_is(w, "analyze") || word_is(w, "analyse")) s.has_analyze = true;
      break;
    default:
      break;
  }
}

// Reads one statement, up to a top-level ';' (returns true) or the end of the text (returns false).
bool scan_statement(SqlLexer& lex, const Classifier& classifier, StatementScan& s) {
  int depth = 0;
  bool seen_for = false;
  Token prev{};
  for (;;) {
    const Token t = lex.next();
    if (t.kind == TokenKind::End) {
      if (depth != 0) s.unbalanced = true;
      return false;
    }
    if (t.kind == TokenKind::Semicolon) {
      if (depth == 0) return true;
      s.unbalanced = true;
    }
    if (s.head_count < kHeadTokens) s.head[s.head_count++] = t;
    switch (t.kind) {
      case TokenKind::LParen:
        if (prev.kind == TokenKind::Word || prev.kind == TokenKind::QuotedIdent) check_call(prev, classifier, s);
        ++depth;
        break;
      case TokenKind::RParen:
        if (--depth < 0) {
          s.unbalanced = true;
          depth = 0;
        }
        break;
      case TokenKind::Word:
        note_word(t.text, prev, depth, seen_for, s);
        break;
      default:
        break;
    }
    prev = t;
  }
}

Classification make(StatementKind kind, const char* reason, bool pins = false, bool read_only = false) {
  Classification c;
  c.kind = kind;
  c.reason = reason;
  c.pins_primary = pins;
  c.read_only = read_only;
  return c;
}

// BEGIN / START TRANSACTION with its last READ ONLY (1) / READ WRITE (0) option, -1 when none.
Classification begin(int read_mode) {
  Classification c = make(StatementKind::TxBegin, "BEGIN", false, read_mode == 1);
  c.read_write = read_mode == 0;
  return c;
}

struct WordRule {
  std::string_view word;
  StatementKind kind;
  const char* reason;
  bool pins;
};

// Statements settled by their first word alone.
constexpr std::array<WordRule, 35> kWordRules = {{
    {"insert", StatementKind::Write, "INSERT", false},
    {"update", StatementKind::Write, "UPDATE", false},
    {"delete", StatementKind::Write, "DELETE", false},
    {"merge", StatementKind::Write, "MERGE", false},
    {"call", StatementKind::Write, "CALL", false},
    {"do", StatementKind::Write, "DO", false},
    {"lock", StatementKind::Write, "LOCK", false},
    {"vacuum", StatementKind::Write, "VACUUM", false},
    {"analyze", StatementKind::Write, "ANALYZE", false},
    {"analyse", StatementKind::Write, "ANALYZE", false},
    {"refresh", StatementKind::Write, "REFRESH MATERIALIZED VIEW", false},
    {"cluster", StatementKind::Write, "CLUSTER", false},
    {"reindex", StatementKind::Write, "REINDEX", false},
    {"checkpoint", StatementKind::Write, "CHECKPOINT", false},
    {"truncate", StatementKind::Write, "TRUNCATE", false},
    {"notify", StatementKind::Write, "NOTIFY", false},
    {"savepoint", StatementKind::Write, "SAVEPOINT", false},
    {"release", StatementKind::Write, "RELEASE SAVEPOINT", false},
    {"fetch", StatementKind::Write, "cursor command", false},
    {"move", StatementKind::Write, "cursor command", false},
    {"close", StatementKind::Write, "cursor command", false},
    {"execute", StatementKind::Write, "EXECUTE", false},
    {"alter", StatementKind::Write, "DDL", false},
    {"drop", StatementKind::Write, "DDL", false},
    {"grant", StatementKind::Write, "DDL", false},
    {"revoke", StatementKind::Write, "DDL", false},
    {"comment", StatementKind::Write, "DDL", false},
    {"security", StatementKind::Write, "DDL", false},
    {"reset", StatementKind::Session, "RESET", false},
    {"show", StatementKind::Session, "SHOW", false},
    {"discard", StatementKind::Session, "DISCARD", false},
    {"deallocate", StatementKind::Session, "DEALLOCATE", false},
    {"unlisten", StatementKind::Session, "UNLISTEN", false},
    {"load", StatementKind::Session, "LOAD", false},
    {"listen", StatementKind::Session, "LISTEN", true},  // LISTEN works only on the primary, and stays
}};

Classification decide(const StatementScan& s, bool& needs_parser) {
  if (s.head_count == 0) return make(StatementKind::Empty, "empty");
  if (s.unbalanced || s.is(0, TokenKind::LParen)) {  // "(SELECT ...) UNION ...", stray parentheses
    needs_parser = true;
    return {};
  }
  if (!s.is(0, TokenKind::Word)) return make(StatementKind::Write, "unrecognised statement");

  if (s.word(0, "select") || s.word(0, "values") || s.word(0, "table")) {
    if (s.has_for || s.has_into || s.has_with || s.write_call) {
      needs_parser = true;
      return {};
    }
    return make(StatementKind::Read, s.word(0, "select") ? "SELECT" : s.word(0, "values") ? "VALUES" : "TABLE");
  }
  if (s.word(0, "with")) {
    needs_parser = true;
    return {};
  }
  if (s.word(0, "explain")) {
    if (s.has_analyze) {  // EXPLAIN ANALYZE runs the statement: the parser looks at what it runs
      needs_parser = true;
      return {};
    }
    return make(StatementKind::Read, "EXPLAIN");
  }
  if (s.word(0, "begin")) return begin(s.read_mode);
  if (s.word(0, "start")) {
    if (s.word(1, "transaction")) return begin(s.read_mode);
    return make(StatementKind::Write, "unrecognised statement");
  }
  if (s.word(0, "commit") || s.word(0, "end")) {
    return make(StatementKind::TxEnd, s.word(1, "prepared") ? "COMMIT PREPARED" : "COMMIT");
  }
  if (s.word(0, "rollback") || s.word(0, "abort")) {
    const bool to = s.word(1, "to") || ((s.word(1, "work") || s.word(1, "transaction")) && s.word(2, "to"));
    if (to) return make(StatementKind::Write, "ROLLBACK TO SAVEPOINT");  // stays inside the transaction
    return make(StatementKind::TxEnd, s.word(1, "prepared") ? "ROLLBACK PREPARED" : "ROLLBACK");
  }
  if (s.word(0, "prepare")) {
    // PREPARE TRANSACTION 'gid' ends the transaction; PREPARE name AS ... only stores a plan.
    if (s.word(1, "transaction") && s.is(2, TokenKind::String)) return make(StatementKind::TxEnd, "PREPARE TRANSACTION");
    return make(StatementKind::Session, "PREPARE");
  }
  if (s.word(0, "set")) {
    const bool tx = s.word(1, "transaction") || (s.word(1, "session") && s.word(2, "characteristics"));
    return make(StatementKind::Session, tx ? "SET TRANSACTION" : "SET", false, tx && s.read_mode == 1);
  }
  if (s.word(0, "create")) {
    size_t i = 1;
    if (s.word(1, "or") && s.word(2, "replace")) i = 3;
    if (s.word(i, "global") || s.word(i, "local")) ++i;
    if (s.word(i, "temp") || s.word(i, "temporary")) return make(StatementKind::Write, "CREATE TEMP", true);
    return make(StatementKind::Write, "DDL", s.session_lock_call);
  }
  if (s.word(0, "declare")) return make(StatementKind::Write, "DECLARE CURSOR", s.with_hold);
  if (s.word(0, "copy")) {
    if (s.is(1, TokenKind::LParen)) {  // COPY (query) TO: the query decides
      needs_parser = true;
      return {};
    }
    if (s.copy_direction == 0) return make(StatementKind::Read, "COPY TO");
    return make(StatementKind::Write, s.copy_direction == 1 ? "COPY FROM" : "COPY");
  }
  for (const WordRule& r : kWordRules) {
    if (s.word(0, r.word)) {
      const bool pins = r.pins || (r.kind == StatementKind::Write && s.session_lock_call);
      return make(r.kind, r.reason, pins);
    }
  }
  return make(StatementKind::Write, "unrecognised statement");
}

}  // namespace

LexicalResult classify_lexically(std::string_view sql, const Classifier& classifier) {
  LexicalResult out;
  SqlLexer lex(sql);
  StatementCombiner combiner;
  bool more = true;
  while (more) {
    StatementScan s;
    more = scan_statement(lex, classifier, s);
    if (lex.error() != nullptr) break;
    combiner.add(decide(s, out.needs_parser));
  }
  if (lex.error() != nullptr) {
    // The server would reject the text (or could read it differently): send it where an error is harmless.
    out.needs_parser = false;
    out.classification = make(StatementKind::Write, lex.error());
    out.classification.primary_hint = lex.primary_hint();
    return out;
  }
  if (!out.needs_parser) out.classification = combiner.result();
  out.classification.primary_hint = lex.primary_hint();
  return out;
}

}  // namespace pgmux::routing
