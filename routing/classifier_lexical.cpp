#include "routing/classifier_lexical.hpp"

#include <array>

#include "routing/classifier_rules.hpp"
#include "routing/session_sql.hpp"
#include "routing/sql_lexer.hpp"

namespace pgmux::routing {
namespace {

constexpr size_t kHeadTokens = 8;  // enough for SET SESSION a.b TO DEFAULT

// What one pass over a statement's tokens learned.
struct StatementScan {
  std::array<Token, kHeadTokens> head{};
  size_t head_count = 0;
  size_t token_count = 0;     // all tokens, head or not
  bool has_for = false;       // FOR: locking clause (or SUBSTRING ... FOR, which the parser sorts out)
  bool has_into = false;      // SELECT ... INTO
  bool has_with = false;      // a CTE somewhere
  bool has_analyze = false;   // EXPLAIN ANALYZE
  bool unbalanced = false;    // ';' inside parentheses or unmatched parentheses: only the parser can tell
  bool write_call = false;    // name( where name is a write function
  bool catalog_hit = false;   // name( of a volatile function, or a view over one where a relation may stand
  bool session_lock_call = false;
  bool config_call = false;   // set_config(...): may change a session parameter
  bool session_call = false;  // name( of a catalog session function: changes the session unseen
  int read_mode = -1;         // last READ ONLY (1) / READ WRITE (0)
  // READ WRITE anywhere: PostgreSQL sets the modes in order, and a standby refuses READ WRITE even when a later
  // READ ONLY would undo it (BEGIN READ WRITE, READ ONLY).
  bool read_write_word = false;
  bool isolation_word = false;     // ISOLATION (LEVEL ...) somewhere
  bool serializable_word = false;  // SERIALIZABLE somewhere
  bool with_hold = false;     // WITH HOLD before the first FOR (DECLARE ... CURSOR WITH HOLD FOR)
  int copy_direction = -1;    // first top-level FROM (1) / TO (0)
  bool temp_schema_object = false;  // pg_temp.name: an object of the session's temporary schema
  bool temp_schema_named = false;   // pg_temp as a word, or in a string of SET or set_config
  bool search_path_string = false;  // 'search_path' in a set_config call
  size_t update_at = 0;             // the last UPDATE word: its position in the statement's tokens, plus one
  bool settings_update = false;     // UPDATE [ONLY] [pg_catalog.]pg_settings: a set_config per row it updates

  bool word(size_t i, std::string_view kw) const {
    return i < head_count && head[i].kind == TokenKind::Word && word_is(head[i].text, kw);
  }
  bool is(size_t i, TokenKind kind) const { return i < head_count && head[i].kind == kind; }
  bool names_setting(size_t i, std::string_view name) const { return i < head_count && is_setting(head[i], name); }
};

// The pg_settings token just read is UPDATE's target: UPDATE [ONLY] [pg_catalog.]pg_settings (not UPDATE t SET
// pg_settings = ..., nor another schema's table of that name).
bool updates_settings_view(const StatementScan& s, const Token& prev) {
  const size_t distance = s.token_count - s.update_at;
  if (prev.kind == TokenKind::Word) {
    return (distance == 1 && word_is(prev.text, "update")) || (distance == 2 && word_is(prev.text, "only"));
  }
  if (prev.kind != TokenKind::Punct || prev.text.front() != '.' || distance < 3) return false;
  const size_t schema_at = s.token_count - 3;  // pg_catalog . pg_settings
  if (schema_at >= s.head_count) return true;  // past the tokens kept: taken as the view
  std::array<char, kNameMax> buf;  // identifier_name writes what it returns
  return identifier_name(s.head[schema_at], buf) == "pg_catalog";
}

struct ScanContext {
  const Classifier& classifier;
  const FunctionCatalog* catalog;
};

void check_call(const Token& name_token, const ScanContext& context, StatementScan& s) {
  std::array<char, kNameMax> buf;  // identifier_name writes what it returns
  const std::string_view name = identifier_name(name_token, buf);
  if (name.empty()) return;
  if (name == "set_config") s.config_call = true;
  bool session_lock = false;
  if (context.classifier.is_write_function(name, &session_lock)) {
    s.write_call = true;
    s.session_lock_call = s.session_lock_call || session_lock;
  }
  if (context.catalog == nullptr) return;
  if (context.catalog->volatile_function(name)) s.catalog_hit = true;
  if (context.catalog->session_function(name)) s.catalog_hit = s.session_call = true;
}

// A name where a relation may stand (after FROM, JOIN, TABLE, ONLY, a comma or a dot: see scan_statement).
void check_relation(const Token& t, const ScanContext& context, StatementScan& s) {
  if (context.catalog == nullptr || !context.catalog->may_be_listed_relation(t.kind == TokenKind::Word, t.text)) return;
  std::array<char, kNameMax> buf;  // identifier_name writes what it returns
  const std::string_view name = identifier_name(t, buf);
  if (!name.empty() && (context.catalog->volatile_view(name) || context.catalog->unlogged_relation(name))) {
    s.catalog_hit = true;
  }
}

// Records the keywords that matter for the decision. Dispatches on length first: most words are
// identifiers that match nothing, and this runs for every one of them. True after FROM, JOIN, ONLY and TABLE:
// a relation may follow.
bool note_word(std::string_view w, const Token& prev, int depth, bool& seen_for, StatementScan& s) {
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
      switch (w[0] | 0x20) {  // lowercase for letters; word_is checks the whole word
        case 'i':
          if (word_is(w, "into")) s.has_into = true;
          break;
        case 'w':
          if (word_is(w, "with")) s.has_with = true;
          break;
        case 'f':
          if (!word_is(w, "from")) break;
          if (depth == 0 && s.copy_direction < 0) s.copy_direction = 1;
          return true;
        case 'h':
          if (word_is(w, "hold") && !seen_for && prev_word && word_is(prev.text, "with")) s.with_hold = true;
          break;
        case 'o':
          if (!word_is(w, "only")) break;
          if (prev_word && word_is(prev.text, "read")) s.read_mode = 1;
          return true;
        case 'j':
          return word_is(w, "join");
        case 'c':
          return word_is(w, "copy");  // COPY relation TO: a standby has no rows of an unlogged one
        default:
          break;
      }
      break;
    case 5:
      if ((w[0] | 0x20) == 't') return word_is(w, "table");
      if (prev_word && word_is(w, "write") && word_is(prev.text, "read")) {
        s.read_mode = 0;
        s.read_write_word = true;
      }
      break;
    case 6:
      if (word_is(w, "update")) s.update_at = s.token_count;
      break;
    case 7:
      if (word_is(w, "analyze") || word_is(w, "analyse")) s.has_analyze = true;
      break;
    case 9:
      if (word_is(w, "isolation")) s.isolation_word = true;
      break;
    case 12:
      if (word_is(w, "serializable")) s.serializable_word = true;
      break;
    default:
      break;
  }
  return false;
}

// Reads one statement, up to a top-level ';' (returns true) or the end of the text (returns false). With a
// catalog it also looks for views over volatile functions where a relation name may stand.
bool scan_statement(SqlLexer& lex, const ScanContext& context, StatementScan& s) {
  int depth = 0;
  bool seen_for = false;
  bool relation_next = false;  // the token before may precede a relation name (FROM, JOIN, ',', '.', ...)
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
    ++s.token_count;
    switch (t.kind) {
      case TokenKind::LParen:
        if (prev.kind == TokenKind::Word || prev.kind == TokenKind::QuotedIdent) check_call(prev, context, s);
        ++depth;
        break;
      case TokenKind::QuotedIdent:
      case TokenKind::Word:
        if (relation_next) check_relation(t, context, s);
        s.temp_schema_named = s.temp_schema_named || is_temp_schema_token(t);
        if (s.update_at != 0 && s.token_count - s.update_at <= 4 && is_settings_view_token(t)) {
          s.settings_update = s.settings_update || updates_settings_view(s, prev);
        }
        break;
      case TokenKind::String:
        if (!s.temp_schema_named && (s.config_call || s.word(0, "set"))) {
          s.temp_schema_named = mentions_temp_schema(t.text);
        }
        if (s.config_call && word_is(t.text, "'search_path'")) s.search_path_string = true;
        break;
      case TokenKind::Punct:
        if (t.text.front() == '.' && is_temp_schema_token(prev)) s.temp_schema_object = true;
        break;
      case TokenKind::RParen:
        if (--depth < 0) {
          s.unbalanced = true;
          depth = 0;
        }
        break;
      default:
        break;
    }
    // FROM ( relation JOIN ...): a parenthesis keeps the relation that may follow.
    relation_next = t.kind == TokenKind::Word
                        ? note_word(t.text, prev, depth, seen_for, s)
                        : (t.kind == TokenKind::Punct && (t.text.front() == ',' || t.text.front() == '.')) ||
                              (relation_next && t.kind == TokenKind::LParen);
    prev = t;
  }
}

Classification make(StatementKind kind, const char* reason, PinReason pin = PinReason::None, bool read_only = false) {
  Classification c;
  c.kind = kind;
  c.reason = reason;
  c.pin_reason = pin;
  c.read_only = read_only;
  return c;
}

Classification primary_only(Classification c) {
  c.primary_only = true;
  return c;
}

PinReason lock_pin(const StatementScan& s) { return s.session_lock_call ? PinReason::AdvisoryLock : PinReason::None; }

// The isolation level a transaction-mode list (BEGIN, START TRANSACTION, SET TRANSACTION, SET SESSION
// CHARACTERISTICS) asks for. SERIALIZABLE is no keyword of any other option there.
Isolation isolation_asked(const StatementScan& s) {
  if (s.serializable_word) return Isolation::Serializable;
  return s.isolation_word ? Isolation::Other : Isolation::Unchanged;
}

// BEGIN / START TRANSACTION with its last READ ONLY (1) / READ WRITE (0) option, -1 when none.
Classification begin(const StatementScan& s) {
  Classification c = make(StatementKind::TxBegin, "BEGIN", PinReason::None, s.read_mode == 1);
  c.read_write = s.read_write_word;
  c.isolation = isolation_asked(s);
  return c;
}

// COMMIT / END, ROLLBACK / ABORT, ROLLBACK TO SAVEPOINT, and COMMIT / ROLLBACK PREPARED (the primary's only).
Classification transaction_end(const StatementScan& s) {
  if (s.word(0, "commit") || s.word(0, "end")) {
    if (!s.word(0, "commit") || !s.word(1, "prepared")) return make(StatementKind::TxEnd, "COMMIT");
    return primary_only(make(StatementKind::TxEnd, "COMMIT PREPARED"));
  }
  const bool to = s.word(1, "to") || ((s.word(1, "work") || s.word(1, "transaction")) && s.word(2, "to"));
  if (to) return make(StatementKind::Write, "ROLLBACK TO SAVEPOINT");  // stays inside the transaction
  if (!s.word(0, "rollback") || !s.word(1, "prepared")) return make(StatementKind::TxEnd, "ROLLBACK");
  return primary_only(make(StatementKind::TxEnd, "ROLLBACK PREPARED"));
}

Classification decide_copy(const StatementScan& s, bool& needs_parser) {
  // COPY (query) TO: the query decides. COPY relation TO of a listed relation (unlogged_relation): the parser tells.
  if (s.is(1, TokenKind::LParen) || (s.copy_direction == 0 && s.catalog_hit)) {
    needs_parser = true;
    return {};
  }
  if (s.copy_direction == 0) return make(StatementKind::Read, "COPY TO");
  Classification c = make(StatementKind::Write, s.copy_direction == 1 ? "COPY FROM" : "COPY");
  c.copy_in = true;
  return c;
}

Classification decide(const StatementScan& s, bool& needs_parser) {
  if (s.head_count == 0) return make(StatementKind::Empty, "empty");
  if (s.unbalanced || s.is(0, TokenKind::LParen)) {  // "(SELECT ...) UNION ...", stray parentheses
    needs_parser = true;
    return {};
  }
  if (!s.is(0, TokenKind::Word)) return make(StatementKind::Write, "unrecognised statement");

  if (s.word(0, "select") || s.word(0, "values") || s.word(0, "table")) {
    if (s.has_for || s.has_into || s.has_with || s.write_call || s.catalog_hit) {
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
    // EXPLAIN ANALYZE runs the statement: the parser looks at what it runs. A listed relation may be one a
    // standby refuses even to plan (unlogged_relation): the parser tells.
    if (s.has_analyze || s.catalog_hit) {
      needs_parser = true;
      return {};
    }
    return make(StatementKind::Read, "EXPLAIN");
  }
  if (s.word(0, "begin")) return begin(s);
  if (s.word(0, "start")) {
    if (s.word(1, "transaction")) return begin(s);
    return make(StatementKind::Write, "unrecognised statement");
  }
  if (s.word(0, "commit") || s.word(0, "end") || s.word(0, "rollback") || s.word(0, "abort")) {
    return transaction_end(s);
  }
  if (s.word(0, "prepare")) {
    // PREPARE TRANSACTION 'gid' ends the transaction; PREPARE name AS ... only stores a plan.
    if (s.word(1, "transaction") && s.is(2, TokenKind::String)) {
      return primary_only(make(StatementKind::TxEnd, "PREPARE TRANSACTION"));
    }
    return make(StatementKind::Session, "PREPARE");
  }
  if (s.word(0, "set")) {
    const bool tx = s.word(1, "transaction") || (s.word(1, "session") && s.word(2, "characteristics"));
    // SET SESSION CHARACTERISTICS changes the session's default, not the transaction at hand: no read mode.
    Classification c = make(StatementKind::Session, tx ? "SET TRANSACTION" : "SET", PinReason::None,
                            s.word(1, "transaction") && s.read_mode == 1);
    c.read_write = s.word(1, "transaction") && s.read_write_word;
    if (tx) c.isolation = isolation_asked(s);
    return c;
  }
  if (s.word(0, "create")) {
    size_t i = 1;
    if (s.word(1, "or") && s.word(2, "replace")) i = 3;
    if (s.word(i, "global") || s.word(i, "local")) ++i;
    if (s.word(i, "temp") || s.word(i, "temporary")) {
      return make(StatementKind::Write, "CREATE TEMP", PinReason::TempTable);
    }
    return make(StatementKind::Write, "DDL", lock_pin(s));
  }
  if (s.word(0, "declare")) {
    return make(StatementKind::Write, "DECLARE CURSOR", s.with_hold ? PinReason::HoldCursor : PinReason::None);
  }
  if (s.word(0, "copy")) return decide_copy(s, needs_parser);
  for (const WordRule& r : kWordRules) {
    if (s.word(0, r.word)) {
      return make(r.kind, r.reason, r.kind == StatementKind::Write ? lock_pin(s) : r.pin);
    }
  }
  return make(StatementKind::Write, "unrecognised statement");
}

// Appends an identifier token as PostgreSQL reads it: unquoted words lowercase, "..." as written with doubled
// quotes undone, either cut to NAMEDATALEN - 1 bytes. False for what it cannot decode (U&"..." escapes) or
// what does not fit.
bool append_identifier(const Token& t, ParameterName& name) {
  if (t.kind == TokenKind::Word) return name.append(t.text.substr(0, kNameMax), /*fold_case=*/true);
  if (t.kind != TokenKind::QuotedIdent || t.text.size() < 2 || t.text.front() != '"') return false;
  const std::string_view inner = t.text.substr(1, t.text.size() - 2);
  size_t kept = 0;
  for (size_t i = 0; i < inner.size() && kept < kNameMax; ++i, ++kept) {
    if (!name.append(inner.substr(i, 1))) return false;
    if (inner[i] == '"') ++i;  // "" stands for one quote
  }
  return true;
}

// Reads the parameter name starting at head token i: a spelled-out form (TIME ZONE, SESSION AUTHORIZATION,
// TRANSACTION ISOLATION LEVEL) or identifiers joined by '.'. Returns the index after it; 0 when unreadable.
size_t read_parameter(const StatementScan& s, size_t i, ParameterName& name) {
  if (s.word(i, "time") && s.word(i + 1, "zone")) return name.append("timezone") ? i + 2 : 0;
  if (s.word(i, "session") && s.word(i + 1, "authorization")) return name.append("session_authorization") ? i + 2 : 0;
  if (s.word(i, "transaction") && s.word(i + 1, "isolation") && s.word(i + 2, "level")) {
    return name.append("transaction_isolation") ? i + 3 : 0;
  }
  if (i >= s.head_count || !append_identifier(s.head[i], name)) return 0;
  ++i;
  while (s.is(i, TokenKind::Punct) && s.head[i].text == "." && i + 1 < s.head_count) {
    if (!name.append(".") || !append_identifier(s.head[i + 1], name)) return 0;
    i += 2;
  }
  return i;
}

// True when the tokens from i to the end of the statement give a parameter its default: TO DEFAULT, = DEFAULT,
// and for TIME ZONE and SESSION AUTHORIZATION also a bare DEFAULT (or LOCAL for the time zone).
bool sets_default(const StatementScan& s, size_t i, std::string_view parameter) {
  if (s.token_count == i + 1) {
    return (parameter == "timezone" && (s.word(i, "default") || s.word(i, "local"))) ||
           (parameter == "session_authorization" && s.word(i, "default"));
  }
  const bool assign = s.word(i, "to") || (s.is(i, TokenKind::Operator) && s.head[i].text == "=");
  return s.token_count == i + 2 && assign && s.word(i + 1, "default");
}

// The level SET default_transaction_isolation {TO | =} value gives (tokens from i: the TO or =).
Isolation isolation_value(const StatementScan& s, size_t i) {
  const bool assign = s.word(i, "to") || (s.is(i, TokenKind::Operator) && s.head[i].text == "=");
  if (!assign || s.token_count != i + 2) return Isolation::Serializable;  // unreadable: the primary's side
  const Token& value = s.head[i + 1];
  std::string_view level;
  if (value.kind == TokenKind::Word) {
    level = value.text;
  } else if (value.kind == TokenKind::String && value.text.size() >= 2 && value.text.front() == '\'' &&
             value.text.find('\'', 1) == value.text.size() - 1) {
    level = value.text.substr(1, value.text.size() - 2);  // 'a plain string' (no E'', $$, quotes inside)
  } else {
    return Isolation::Serializable;  // E'...', $$...$$, "...": read by the primary's side
  }
  return word_is(level, "serializable") ? Isolation::Serializable : Isolation::Other;
}

// SET [SESSION | LOCAL] ...: how long it lasts, and SET name TO DEFAULT read as the RESET it is (its parameter into
// *target, when asked for). The transaction settings last their transaction whatever the SET says (PostgreSQL
// starts each one from the defaults).
void note_set(const StatementScan& s, Classification& c, ParameterName* target) {
  if (s.word(1, "local") || s.word(1, "constraints")) {
    c.effects.add(SessionEffect::SetLocal);
    ParameterName local_name;
    const bool named = s.word(1, "local") && read_parameter(s, 2, local_name) != 0;
    if (named && is_transaction_mode_parameter(local_name.view())) c.read_write = true;
    if (s.word(1, "local") && (!named || fixed_at_parse(local_name.view()))) {
      c.effects.add(SessionEffect::SetLocalAnalysis);
    }
    return;
  }
  const size_t at = s.word(1, "session") && !s.word(2, "characteristics") && !s.word(2, "authorization") ? 2 : 1;
  if (s.word(at, "transaction")) {  // SET TRANSACTION ..., SET TRANSACTION SNAPSHOT
    c.effects.add(SessionEffect::SetLocal);
    if (s.word(at + 1, "snapshot")) c.read_write = true;  // pgmux sends pg_export_snapshot() to the primary
    return;
  }
  ParameterName name;
  const bool characteristics = s.word(at, "session") && s.word(at + 1, "characteristics");
  const size_t end = characteristics ? 0 : read_parameter(s, at, name);
  if (end != 0 && is_transaction_mode_parameter(name.view())) {
    c.effects.add(SessionEffect::SetLocal);
    c.read_write = true;
    return;
  }
  if (end != 0 && !name.empty() && sets_default(s, end, name.view())) {
    c.effects.add(SessionEffect::Reset);
    if (target != nullptr) *target = name;
    return;
  }
  c.effects.add(SessionEffect::Set);
  if (end != 0 && name.view() == "default_transaction_isolation") c.isolation = isolation_value(s, end);
}

// RESET name (its parameter into *target, when asked for and readable), RESET ALL.
void note_reset(const StatementScan& s, Classification& c, ParameterName* target) {
  if (s.word(1, "all") && s.token_count == 2) {
    c.effects.add(SessionEffect::ResetAll);
    return;
  }
  c.effects.add(SessionEffect::Reset);
  if (target != nullptr && read_parameter(s, 1, *target) != s.token_count) *target = ParameterName{};
}

// CREATE [OR REPLACE] ... / ALTER / DROP of a function, view, extension, schema... (a catalog object word among
// the first words), or DO, which may create anything.
bool changes_catalog(const StatementScan& s) {
  if (s.word(0, "do")) return true;
  if (!s.word(0, "create") && !s.word(0, "alter") && !s.word(0, "drop")) return false;
  std::array<char, kNameMax> buf{};
  for (size_t i = 1; i < s.head_count; ++i) {
    if (s.head[i].kind == TokenKind::Word && is_catalog_object_word(identifier_name(s.head[i], buf))) return true;
  }
  return false;
}

// The session command a statement runs, read off its first words once decide() has settled its kind, and
// the calls that touch the session wherever they appear.
void note_session_facts(const StatementScan& s, Classification& c) {
  c.write_function = s.write_call;
  c.catalog_change = c.kind == StatementKind::Write && changes_catalog(s);
  if (s.config_call || s.settings_update) c.effects.add(SessionEffect::SetConfig);
  if (s.word(0, "do") || s.session_call) c.effects.add(SessionEffect::Opaque);
  if (c.kind != StatementKind::Session) return;  // PREPARE TRANSACTION, errors, statements left to the parser
  if (s.word(0, "set")) {
    note_set(s, c, nullptr);
  } else if (s.word(0, "reset")) {
    note_reset(s, c, nullptr);
  } else if (s.word(0, "discard")) {
    c.effects.add(s.word(1, "all") ? SessionEffect::DiscardAll : SessionEffect::Discard);
  } else if (s.word(0, "deallocate")) {
    const size_t name_at = s.word(1, "prepare") && s.token_count > 2 ? 2 : 1;
    c.effects.add(s.word(name_at, "all") ? SessionEffect::DeallocateAll : SessionEffect::Deallocate);
  } else if (s.word(0, "prepare")) {
    c.effects.add(SessionEffect::Prepare);
  } else if (s.word(0, "listen") || s.word(0, "unlisten")) {
    c.effects.add(SessionEffect::Listen);
  } else if (s.word(0, "load")) {
    c.effects.add(SessionEffect::Load);
  } else if (s.word(0, "show")) {
    c.effects.add(SessionEffect::Show);
  }
}

// An object of the session's temporary schema (CREATE TABLE pg_temp.t, SELECT ... INTO pg_temp.t, a use of one), or
// a search_path naming that schema set (an unqualified CREATE may land there): state only this server has,
// whatever the statement's keywords say. The parser path does not look for it: Classifier::classify adds it.
PinReason temp_schema_pin(const StatementScan& s) {
  if (s.temp_schema_object) return PinReason::TempTable;
  const bool sets_path = (s.config_call && s.search_path_string) ||
                         (s.word(0, "set") && (s.names_setting(1, "search_path") || s.names_setting(2, "search_path")));
  return s.temp_schema_named && sets_path ? PinReason::TempTable : PinReason::None;
}

}  // namespace

namespace {

// Every statement of the text, scanned with `lex` and combined (left alone when one needs the parser).
void scan_statements(SqlLexer& lex, const ScanContext& context, LexicalResult& out) {
  StatementCombiner combiner;
  bool more = true;
  while (more) {
    StatementScan s;
    more = scan_statement(lex, context, s);
    if (lex.error() != nullptr) return;
    Classification c = decide(s, out.needs_parser);
    note_session_facts(s, c);
    if (out.temp_schema_pin == PinReason::None) out.temp_schema_pin = temp_schema_pin(s);
    combiner.add(c);
  }
  if (!out.needs_parser) out.classification = combiner.result();
}

}  // namespace

std::string reset_parameter_of(std::string_view statement, const Classifier& classifier) {
  const ScanContext context{classifier, nullptr};
  SqlLexer lex(statement);
  ParameterName name;
  bool resets = false, seen = false, more = true;
  while (more) {
    StatementScan s;
    more = scan_statement(lex, context, s);
    if (lex.error() != nullptr || (seen && s.head_count > 0)) return {};  // one statement only
    if (s.head_count == 0) continue;
    seen = true;
    bool needs_parser = false;
    Classification c = decide(s, needs_parser);
    if (c.kind != StatementKind::Session) return {};
    if (s.word(0, "set")) note_set(s, c, &name);
    if (s.word(0, "reset")) note_reset(s, c, &name);
    resets = c.effects.has(SessionEffect::Reset);
  }
  return resets ? std::string(name.view()) : std::string();
}

LexicalResult classify_lexically(std::string_view sql, const Classifier& classifier, const FunctionCatalog* catalog) {
  LexicalResult out;
  const ScanContext context{classifier, catalog};
  SqlLexer lex(sql);
  scan_statements(lex, context, out);
  if (lex.ambiguous()) {
    // A backslash another session's settings would read otherwise (standard_conforming_strings off, an SJIS-like
    // client encoding): the text is classified as PostgreSQL reads it by default, which is what every other session
    // runs, and marked unreadable: a session that may read it otherwise takes its effects as unknown
    // (ClientConn::read_as_session_does).
    SqlLexer standard(sql, Reading::Standard);
    out = LexicalResult{};
    scan_statements(standard, context, out);
    out.classification.unreadable = true;
    if (standard.error() == nullptr) {
      out.classification.primary_hint = standard.primary_hint();
      return out;
    }
  }
  if (lex.error() != nullptr) {
    // The server rejects the text (an unterminated literal, a NUL byte): send it where an error is harmless.
    const bool unreadable = out.classification.unreadable;
    out.needs_parser = false;
    out.classification = make(StatementKind::Write, lex.error());
    out.classification.unreadable = unreadable;
    out.classification.primary_hint = lex.primary_hint();
    return out;
  }
  out.classification.primary_hint = lex.primary_hint();
  return out;
}

}  // namespace pgmux::routing
