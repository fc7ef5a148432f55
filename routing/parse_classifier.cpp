#include "routing/parse_classifier.hpp"

#include <pg_query.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "routing/classifier_rules.hpp"
#include "routing/parse_tree.hpp"
#include "routing/session_sql.hpp"

namespace pgmux::routing {
namespace {

using nlohmann::json;
using parse_tree::member;
using parse_tree::string_of;

constexpr int kMaxDepth = 2000;        // guards our recursion; PostgreSQL's own stack check comes first
constexpr int64_t kCursorOptHold = 0x20;  // CURSOR_OPT_HOLD in parsenodes.h

int64_t int_of(const json* j) { return (j != nullptr && j->is_number_integer()) ? j->get<int64_t>() : 0; }

bool bool_of(const json* j) { return j != nullptr && j->is_boolean() && j->get<bool>(); }

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

// What a walk over a whole statement tree found.
struct TreeFacts {
  const char* modifying = nullptr;  // a data-modifying statement nested inside (CTE)
  bool locking = false;             // FOR UPDATE/SHARE at any level
  bool write_call = false;
  bool session_lock = false;
  bool config_call = false;         // set_config(...) whose is_local is not the constant true
  bool local_config_call = false;   // set_config(..., true): lasts the transaction, as SET LOCAL
  bool local_config_analysis = false;  // ... of a setting fixed at parse, or of a name not written as a constant
  bool too_deep = false;
  std::string calls;                // every function name called, each followed by '\0'
  std::string relations;            // every relation name read or written, each followed by '\0'

  PinReason lock_pin() const { return session_lock ? PinReason::AdvisoryLock : PinReason::None; }
};

// set_config(name, value, is_local) changes the session unless is_local is written as the constant true.
bool sets_session_config(const json& call) {
  const json* args = member(call, "args");
  if (args == nullptr || !args->is_array() || args->size() != 3) return true;
  const json* constant = member((*args)[2], "A_Const");
  const json* boolval = constant != nullptr ? member(*constant, "boolval") : nullptr;
  return boolval == nullptr || !bool_of(member(*boolval, "boolval"));
}

// A string constant's text, empty for anything else.
std::string_view string_constant(const json* node) {
  const json* aconst = node != nullptr ? member(*node, "A_Const") : nullptr;
  const json* sval = aconst != nullptr ? member(*aconst, "sval") : nullptr;
  return sval != nullptr ? string_of(member(*sval, "sval")) : std::string_view();
}

// set_config(name, ...) whose name is a setting fixed at parse (routing::fixed_at_parse), or not a constant.
bool sets_setting_fixed_at_parse(const json& call) {
  const json* args = member(call, "args");
  if (args == nullptr || !args->is_array() || args->empty()) return true;
  const std::string_view name = string_constant(&(*args)[0]);
  return name.empty() || fixed_at_parse(name);
}

const char* modifying_reason(std::string_view key) {
  if (key == "InsertStmt") return "INSERT";
  if (key == "UpdateStmt") return "UPDATE";
  if (key == "DeleteStmt") return "DELETE";
  if (key == "MergeStmt") return "MERGE";
  return nullptr;
}

// Adds a name to a '\0'-separated list once.
void add_name(std::string& list, std::string_view name) {
  if (name.empty()) return;
  for (std::string_view rest = list; !rest.empty();) {
    const size_t end = rest.find('\0');
    if (rest.substr(0, end) == name) return;
    rest.remove_prefix(end + 1);
  }
  list.append(name);
  list.push_back('\0');
}

void check_call(const json& call, const Classifier& classifier, TreeFacts& f) {
  const json* names = member(call, "funcname");
  if (names == nullptr || !names->is_array() || names->empty()) return;
  // The last name part is the function; a schema qualifier does not change what it does.
  const json* part = member(names->back(), "String");
  const std::string_view name = string_of(part != nullptr ? member(*part, "sval") : nullptr);
  add_name(f.calls, name);
  if (name == "set_config" && sets_session_config(call)) {
    f.config_call = true;
  } else if (name == "set_config") {
    f.local_config_call = true;
    f.local_config_analysis = f.local_config_analysis || sets_setting_fixed_at_parse(call);
  }
  bool session_lock = false;
  if (!name.empty() && classifier.is_write_function(name, &session_lock)) {
    f.write_call = true;
    f.session_lock = f.session_lock || session_lock;
  }
}

// UPDATE [ONLY] [pg_catalog.]pg_settings (its relation is a typed field: no RangeVar node around it).
bool updates_settings_view(const json& update) {
  const json* relation = member(update, "relation");
  if (relation == nullptr || string_of(member(*relation, "relname")) != "pg_settings") return false;
  const std::string_view schema = string_of(member(*relation, "schemaname"));
  return schema.empty() || schema == "pg_catalog";
}

void walk(const json& j, const Classifier& classifier, TreeFacts& f, int depth) {
  if (depth > kMaxDepth) {
    f.too_deep = true;
    return;
  }
  if (j.is_array()) {
    for (const json& e : j) walk(e, classifier, f, depth + 1);
    return;
  }
  if (!j.is_object()) return;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "FuncCall") {
      check_call(it.value(), classifier, f);
    } else if (key == "RangeVar") {
      add_name(f.relations, string_of(member(it.value(), "relname")));
    } else if (key == "UpdateStmt" && updates_settings_view(it.value())) {
      f.config_call = true;  // pg_settings' update rule calls set_config(name, setting, false) per row
    } else if (key == "lockingClause") {
      if (it.value().is_array() && !it.value().empty()) f.locking = true;
    } else if (const char* r = modifying_reason(key); r != nullptr && f.modifying == nullptr) {
      f.modifying = r;
    }
    walk(it.value(), classifier, f, depth + 1);
  }
}

// transaction_read_only in a BEGIN / SET TRANSACTION option list (the last one wins): 1 READ ONLY, 0 READ WRITE,
// -1 when absent; *any_read_write: READ WRITE anywhere in it (a standby refuses it, whatever follows).
int read_mode_option(const json* options, bool* any_read_write) {
  int read_mode = -1;
  *any_read_write = false;
  if (options == nullptr || !options->is_array()) return -1;
  for (const json& o : *options) {
    const json* def = member(o, "DefElem");
    if (def == nullptr || string_of(member(*def, "defname")) != "transaction_read_only") continue;
    const json* arg = member(*def, "arg");
    const json* aconst = arg != nullptr ? member(*arg, "A_Const") : nullptr;
    const json* ival = aconst != nullptr ? member(*aconst, "ival") : nullptr;
    read_mode = ival != nullptr && int_of(member(*ival, "ival")) != 0 ? 1 : 0;
    *any_read_write = *any_read_write || read_mode == 0;
  }
  return read_mode;
}

// An isolation level's name as the parser gives it (unquoted words folded, a quoted one as written: PostgreSQL
// reads either case-insensitively).
Isolation isolation_named(std::string_view level) {
  constexpr std::string_view kSerializable = "serializable";
  const bool serializable = level.size() == kSerializable.size() &&
                            std::equal(level.begin(), level.end(), kSerializable.begin(), [](char a, char b) {
                              return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
                            });
  return serializable ? Isolation::Serializable : Isolation::Other;
}

// transaction_isolation in a BEGIN / SET TRANSACTION / SET SESSION CHARACTERISTICS option list (the last wins).
Isolation isolation_option(const json* options) {
  Isolation isolation = Isolation::Unchanged;
  if (options == nullptr || !options->is_array()) return isolation;
  for (const json& o : *options) {
    const json* def = member(o, "DefElem");
    if (def == nullptr || string_of(member(*def, "defname")) != "transaction_isolation") continue;
    isolation = isolation_named(string_constant(member(*def, "arg")));
  }
  return isolation;
}

// EXPLAIN (ANALYZE [value]) or EXPLAIN ANALYZE. An unreadable value counts as true (the safe side).
bool explain_analyzes(const json* options) {
  bool analyze = false;
  if (options == nullptr || !options->is_array()) return false;
  for (const json& o : *options) {
    const json* def = member(o, "DefElem");
    if (def == nullptr || string_of(member(*def, "defname")) != "analyze") continue;
    const json* arg = member(*def, "arg");
    if (arg == nullptr) {
      analyze = true;
    } else if (const json* s = member(*arg, "String")) {
      const std::string_view v = string_of(member(*s, "sval"));
      analyze = !(v == "false" || v == "off" || v == "0" || v == "no");
    } else if (const json* i = member(*arg, "Integer")) {
      analyze = int_of(member(*i, "ival")) != 0;
    } else {
      analyze = true;
    }
  }
  return analyze;
}

// Made in the session's temporary schema: TEMP, or a name qualified by pg_temp (pg_temp_<n>).
bool temp_relation(const json* rangevar) {
  return rangevar != nullptr && (string_of(member(*rangevar, "relpersistence")) == "t" ||
                                 is_temp_schema_name(string_of(member(*rangevar, "schemaname"))));
}

Classification classify_select(const json& body, const TreeFacts& f) {
  if (const json* into = member(body, "intoClause")) {
    const bool temp = temp_relation(member(*into, "rel"));
    return make(StatementKind::Write, "SELECT INTO", temp ? PinReason::TempTable : f.lock_pin());
  }
  if (f.locking) return make(StatementKind::Write, "FOR UPDATE/SHARE", f.lock_pin());
  if (f.modifying != nullptr) return make(StatementKind::Write, "data-modifying CTE", f.lock_pin());
  if (f.write_call) return make(StatementKind::Write, "write function", f.lock_pin());
  return make(StatementKind::Read, "SELECT");
}

Classification classify_transaction(const json& body) {
  const std::string_view kind = string_of(member(body, "kind"));
  if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START") {
    bool any_read_write = false;
    const int read_mode = read_mode_option(member(body, "options"), &any_read_write);
    Classification c = make(StatementKind::TxBegin, "BEGIN", PinReason::None, read_mode == 1);
    c.read_write = any_read_write;
    c.isolation = isolation_option(member(body, "options"));
    return c;
  }
  if (kind == "TRANS_STMT_COMMIT") return make(StatementKind::TxEnd, "COMMIT");
  if (kind == "TRANS_STMT_ROLLBACK") return make(StatementKind::TxEnd, "ROLLBACK");
  if (kind == "TRANS_STMT_PREPARE") return primary_only(make(StatementKind::TxEnd, "PREPARE TRANSACTION"));
  if (kind == "TRANS_STMT_COMMIT_PREPARED") return primary_only(make(StatementKind::TxEnd, "COMMIT PREPARED"));
  if (kind == "TRANS_STMT_ROLLBACK_PREPARED") return primary_only(make(StatementKind::TxEnd, "ROLLBACK PREPARED"));
  if (kind == "TRANS_STMT_SAVEPOINT") return make(StatementKind::Write, "SAVEPOINT");
  if (kind == "TRANS_STMT_RELEASE") return make(StatementKind::Write, "RELEASE SAVEPOINT");
  if (kind == "TRANS_STMT_ROLLBACK_TO") return make(StatementKind::Write, "ROLLBACK TO SAVEPOINT");
  return make(StatementKind::Write, "unrecognised transaction command");
}

// The value list of SET default_transaction_isolation: one level (anything else counts as SERIALIZABLE: the
// primary's side).
Isolation default_isolation(const json* args) {
  if (args == nullptr || !args->is_array() || args->size() != 1) return Isolation::Serializable;
  const std::string_view level = string_constant(&(*args)[0]);
  return level.empty() ? Isolation::Serializable : isolation_named(level);
}

// SET and RESET: how long a SET lasts, and RESET name or SET name TO DEFAULT with the parameter it names.
Classification classify_variable_set(const json& body) {
  const std::string_view name = string_of(member(body, "name"));
  const std::string_view kind = string_of(member(body, "kind"));
  const bool local = bool_of(member(body, "is_local"));
  Classification c;
  if (name == "TRANSACTION" || name == "SESSION CHARACTERISTICS") {
    bool any_read_write = false;
    const int read_mode = read_mode_option(member(body, "args"), &any_read_write);
    c = make(StatementKind::Session, "SET TRANSACTION", PinReason::None, read_mode == 1 && name == "TRANSACTION");
    c.read_write = any_read_write && name == "TRANSACTION";
    c.isolation = isolation_option(member(body, "args"));
  } else {
    c = make(StatementKind::Session, kind.starts_with("VAR_RESET") ? "RESET" : "SET");
  }
  if (kind == "VAR_RESET_ALL") {
    c.effects.add(SessionEffect::ResetAll);
  } else if (kind == "VAR_RESET" || (kind == "VAR_SET_DEFAULT" && !local)) {
    c.effects.add(SessionEffect::Reset);  // its parameter: Classifier::reset_parameter
  } else if (is_transaction_mode_parameter(name)) {  // lasts the transaction, as each one starts anew
    c.effects.add(SessionEffect::SetLocal);
    c.read_write = true;
  } else if (local || name.starts_with("TRANSACTION")) {  // SET TRANSACTION [SNAPSHOT] lasts the transaction
    c.effects.add(SessionEffect::SetLocal);
    if (name == "TRANSACTION SNAPSHOT") c.read_write = true;  // pgmux sends pg_export_snapshot() to the primary
    if (local && fixed_at_parse(name)) c.effects.add(SessionEffect::SetLocalAnalysis);
  } else {
    c.effects.add(SessionEffect::Set);
    if (name == "default_transaction_isolation") c.isolation = default_isolation(member(body, "args"));
  }
  return c;
}

// Session commands other than SET and RESET.
struct SessionRule {
  std::string_view type;
  const char* reason;
  SessionEffect effect;
  PinReason pin;
};

constexpr std::array<SessionRule, 8> kSessionRules = {{
    {"VariableShowStmt", "SHOW", SessionEffect::Show, PinReason::None},
    {"DiscardStmt", "DISCARD", SessionEffect::Discard, PinReason::None},  // DISCARD ALL: see session_effect
    {"PrepareStmt", "PREPARE", SessionEffect::Prepare, PinReason::None},
    {"DeallocateStmt", "DEALLOCATE", SessionEffect::Deallocate, PinReason::None},  // and DEALLOCATE ALL
    {"UnlistenStmt", "UNLISTEN", SessionEffect::Listen, PinReason::None},
    {"LoadStmt", "LOAD", SessionEffect::Load, PinReason::None},
    {"ConstraintsSetStmt", "SET CONSTRAINTS", SessionEffect::SetLocal, PinReason::None},
    {"ListenStmt", "LISTEN", SessionEffect::Listen, PinReason::Listen},  // LISTEN works only on the primary
}};

SessionEffect session_effect(const SessionRule& rule, const json& body) {
  if (rule.effect == SessionEffect::Discard && string_of(member(body, "target")) == "DISCARD_ALL") {
    return SessionEffect::DiscardAll;
  }
  if (rule.effect == SessionEffect::Deallocate && member(body, "name") == nullptr) return SessionEffect::DeallocateAll;
  return rule.effect;
}

struct WriteRule {
  std::string_view type;
  const char* reason;
};

constexpr std::array<WriteRule, 16> kWriteRules = {{
    {"NotifyStmt", "NOTIFY"},
    {"ExecuteStmt", "EXECUTE"},
    {"FetchStmt", "cursor command"},
    {"ClosePortalStmt", "cursor command"},
    {"DoStmt", "DO"},
    {"CallStmt", "CALL"},
    {"LockStmt", "LOCK"},
    {"RefreshMatViewStmt", "REFRESH MATERIALIZED VIEW"},
    {"ClusterStmt", "CLUSTER"},
    {"ReindexStmt", "REINDEX"},
    {"CheckPointStmt", "CHECKPOINT"},
    {"TruncateStmt", "TRUNCATE"},
    {"InsertStmt", "INSERT"},
    {"UpdateStmt", "UPDATE"},
    {"DeleteStmt", "DELETE"},
    {"MergeStmt", "MERGE"},
}};

Classification classify_node(const json& node, const TreeFacts& f, int depth);

// EXPLAIN runs its statement only with ANALYZE; COPY (query) TO runs the query.
Classification classify_wrapper(std::string_view type, const json& body, const TreeFacts& f, int depth) {
  const json* query = member(body, "query");
  if (type == "ExplainStmt") {
    if (!explain_analyzes(member(body, "options"))) return make(StatementKind::Read, "EXPLAIN");
    const Classification inner = query != nullptr ? classify_node(*query, f, depth + 1)
                                                  : make(StatementKind::Write, "EXPLAIN ANALYZE");
    if (inner.kind == StatementKind::Write) {
      return make(StatementKind::Write, "EXPLAIN ANALYZE of a write", inner.pin_reason);
    }
    return make(StatementKind::Read, "EXPLAIN ANALYZE");
  }
  if (bool_of(member(body, "is_from"))) return make(StatementKind::Write, "COPY FROM");
  if (query != nullptr) {
    const Classification inner = classify_node(*query, f, depth + 1);
    if (inner.kind == StatementKind::Write) return make(StatementKind::Write, inner.reason, inner.pin_reason);
  }
  return make(StatementKind::Read, "COPY TO");
}

// The relation a CREATE makes, for the statements that can make a temporary one.
const json* created_relation(std::string_view type, const json& body) {
  if (type == "CreateStmt") return member(body, "relation");
  if (type == "CreateSeqStmt") return member(body, "sequence");
  if (type == "ViewStmt") return member(body, "view");
  if (type == "CreateTableAsStmt") {
    const json* into = member(body, "into");
    return into != nullptr ? member(*into, "rel") : nullptr;
  }
  return nullptr;
}

Classification classify_typed(std::string_view type, const json& body, const TreeFacts& f, int depth) {
  if (type == "SelectStmt") return classify_select(body, f);
  if (type == "TransactionStmt") return classify_transaction(body);
  if (type == "VariableSetStmt") return classify_variable_set(body);
  for (const SessionRule& r : kSessionRules) {
    if (type == r.type) {
      Classification c = make(StatementKind::Session, r.reason, r.pin);
      c.effects.add(session_effect(r, body));
      return c;
    }
  }
  if (type == "ExplainStmt" || type == "CopyStmt") return classify_wrapper(type, body, f, depth);
  if (type == "DeclareCursorStmt") {
    const bool hold = (int_of(member(body, "options")) & kCursorOptHold) != 0;
    return make(StatementKind::Write, "DECLARE CURSOR", hold ? PinReason::HoldCursor : PinReason::None);
  }
  // Temporary objects live in this session on this server.
  if (temp_relation(created_relation(type, body))) {
    return make(StatementKind::Write, "CREATE TEMP", PinReason::TempTable);
  }
  if (type == "VacuumStmt") {
    return make(StatementKind::Write, bool_of(member(body, "is_vacuumcmd")) ? "VACUUM" : "ANALYZE", f.lock_pin());
  }
  for (const WriteRule& r : kWriteRules) {
    if (type == r.type) return make(StatementKind::Write, r.reason, f.lock_pin());  // INSERT ... pg_advisory_lock(1)
  }
  // Everything else is DDL or a utility command that changes state: the primary.
  return make(StatementKind::Write, "DDL", f.lock_pin());
}

Classification classify_node(const json& node, const TreeFacts& f, int depth) {
  if (depth > kMaxDepth || !node.is_object() || node.empty())
    return make(StatementKind::Write, "unrecognised statement");
  const auto it = node.begin();
  return classify_typed(it.key(), it.value(), f, depth);
}

// Statements that may change which functions or views are volatile (is_catalog_object_word, and DO).
constexpr std::array<std::string_view, 10> kCatalogStatements = {
    "CreateFunctionStmt", "AlterFunctionStmt", "ViewStmt", "RuleStmt", "CreateExtensionStmt",
    "AlterExtensionStmt", "AlterExtensionContentsStmt", "CreateSchemaStmt", "CreatePLangStmt", "DoStmt",
};

// DROP, ALTER ... RENAME / SET SCHEMA and CREATE AGGREGATE name their object's kind.
constexpr std::array<std::string_view, 8> kCatalogObjectTypes = {
    "OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE", "OBJECT_AGGREGATE",
    "OBJECT_VIEW", "OBJECT_RULE", "OBJECT_EXTENSION", "OBJECT_SCHEMA",
};

bool changes_catalog(std::string_view type, const json& body) {
  for (std::string_view t : kCatalogStatements) {
    if (type == t) return true;
  }
  std::string_view object;
  if (type == "DropStmt") object = string_of(member(body, "removeType"));
  if (type == "RenameStmt") object = string_of(member(body, "renameType"));
  if (type == "AlterObjectSchemaStmt") object = string_of(member(body, "objectType"));
  if (type == "DefineStmt") object = string_of(member(body, "kind"));
  for (std::string_view o : kCatalogObjectTypes) {
    if (object == o) return true;
  }
  return false;
}

// EXPLAIN without ANALYZE plans its statement without running it.
bool runs_its_calls(std::string_view type, const json& body) {
  return type != "ExplainStmt" || explain_analyzes(member(body, "options"));
}

// One statement: a single walk gathers the calls and clauses, then its type decides. The names a read uses go
// to `out` for the catalog.
Classification classify_statement(const json* stmt, const Classifier& classifier, ParsedStatements& out) {
  if (stmt == nullptr || !stmt->is_object() || stmt->empty()) {
    return make(StatementKind::Write, "unrecognised statement");
  }
  TreeFacts f;
  walk(*stmt, classifier, f, 0);
  if (f.too_deep) return make(StatementKind::Write, "statement too deeply nested");
  Classification c = classify_node(*stmt, f, 0);
  c.write_function = f.write_call;
  if (f.config_call) c.effects.add(SessionEffect::SetConfig);
  if (f.local_config_call) c.effects.add(SessionEffect::SetLocal);
  if (f.local_config_analysis) c.effects.add(SessionEffect::SetLocalAnalysis);
  const std::string_view type = stmt->begin().key();
  if (type == "DoStmt") c.effects.add(SessionEffect::Opaque);
  if (type == "CopyStmt") {  // COPY relation TO: its relation is a typed field, with no RangeVar node around it
    const json* relation = member(stmt->begin().value(), "relation");
    if (relation != nullptr) add_name(f.relations, string_of(member(*relation, "relname")));
  }
  c.catalog_change = changes_catalog(type, stmt->begin().value());
  out.calls += f.calls;
  if (c.kind == StatementKind::Read) out.planned_relations += f.relations;  // a standby plans them too
  if (c.kind == StatementKind::Read && runs_its_calls(type, stmt->begin().value())) {
    out.read_calls += f.calls;
    out.read_relations += f.relations;
  }
  return c;
}

}  // namespace

ParsedStatements parse_statements(std::string_view sql, const Classifier& classifier) {
  const std::string text(sql);  // libpg_query wants a NUL-terminated string
  PgQueryParseResult result = pg_query_parse(text.c_str());
  ParsedStatements out;
  if (result.error != nullptr || result.parse_tree == nullptr) {
    out.classification = make(StatementKind::Write, "unparsable");
  } else {
    const json doc = json::parse(result.parse_tree, nullptr, /*allow_exceptions=*/false);
    const json* stmts = member(doc, "stmts");
    if (doc.is_discarded() || stmts == nullptr || !stmts->is_array()) {
      out.classification = make(StatementKind::Write, "unreadable parse tree");
    } else {
      StatementCombiner combiner;
      for (const json& raw : *stmts) {
        combiner.add(classify_statement(member(raw, "stmt"), classifier, out));
      }
      out.classification = combiner.result();
    }
  }
  pg_query_free_parse_result(result);
  out.classification.parsed = true;
  return out;
}

bool parses_without_syntax_error(std::string_view sql) {
  const std::string text(sql);
  PgQueryParseResult result = pg_query_parse(text.c_str());
  const bool parsed = result.error == nullptr;
  pg_query_free_parse_result(result);
  return parsed;
}

Classification classify_parsed(std::string_view sql, const Classifier& classifier) {
  return parse_statements(sql, classifier).classification;
}

}  // namespace pgmux::routing
