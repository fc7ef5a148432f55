#include "routing/parse_classifier.hpp"

#include <pg_query.h>

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "routing/classifier_rules.hpp"

namespace pgmux::routing {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 2000;        // guards our recursion; PostgreSQL's own stack check comes first
constexpr int64_t kCursorOptHold = 0x20;  // CURSOR_OPT_HOLD in parsenodes.h

const json* member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string_view string_of(const json* j) {
  if (j == nullptr || !j->is_string()) return {};
  return j->get_ref<const std::string&>();
}

int64_t int_of(const json* j) { return (j != nullptr && j->is_number_integer()) ? j->get<int64_t>() : 0; }

bool bool_of(const json* j) { return j != nullptr && j->is_boolean() && j->get<bool>(); }

Classification make(StatementKind kind, const char* reason, bool pins = false, bool read_only = false) {
  Classification c;
  c.kind = kind;
  c.reason = reason;
  c.pins_primary = pins;
  c.read_only = read_only;
  return c;
}

// What a walk over a whole statement tree found.
struct TreeFacts {
  const char* modifying = nullptr;  // a data-modifying statement nested inside (CTE)
  bool locking = false;             // FOR UPDATE/SHARE at any level
  bool write_call = false;
  bool session_lock = false;
  bool too_deep = false;
};

const char* modifying_reason(std::string_view key) {
  if (key == "InsertStmt") return "INSERT";
  if (key == "UpdateStmt") return "UPDATE";
  if (key == "DeleteStmt") return "DELETE";
  if (key == "MergeStmt") return "MERGE";
  return nullptr;
}

void check_call(const json& call, const Classifier& classifier, TreeFacts& f) {
  const json* names = member(call, "funcname");
  if (names == nullptr || !names->is_array() || names->empty()) return;
  // The last name part is the function; a schema qualifier does not change what it does.
  const json* part = member(names->back(), "String");
  const std::string_view name = string_of(part != nullptr ? member(*part, "sval") : nullptr);
  bool session_lock = false;
  if (!name.empty() && classifier.is_write_function(name, &session_lock)) {
    f.write_call = true;
    f.session_lock = f.session_lock || session_lock;
  }
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
    } else if (key == "lockingClause") {
      if (it.value().is_array() && !it.value().empty()) f.locking = true;
    } else if (const char* r = modifying_reason(key); r != nullptr && f.modifying == nullptr) {
      f.modifying = r;
    }
    walk(it.value(), classifier, f, depth + 1);
  }
}

// transaction_read_only in a BEGIN / SET TRANSACTION option list (the last one wins): 1 READ ONLY, 0 READ WRITE,
// -1 when absent.
int read_mode_option(const json* options) {
  int read_mode = -1;
  if (options == nullptr || !options->is_array()) return -1;
  for (const json& o : *options) {
    const json* def = member(o, "DefElem");
    if (def == nullptr || string_of(member(*def, "defname")) != "transaction_read_only") continue;
    const json* arg = member(*def, "arg");
    const json* aconst = arg != nullptr ? member(*arg, "A_Const") : nullptr;
    const json* ival = aconst != nullptr ? member(*aconst, "ival") : nullptr;
    read_mode = ival != nullptr && int_of(member(*ival, "ival")) != 0 ? 1 : 0;
  }
  return read_mode;
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

bool temp_relation(const json* rangevar) {
  return rangevar != nullptr && string_of(member(*rangevar, "relpersistence")) == "t";
}

Classification classify_select(const json& body, const Classifier& classifier) {
  TreeFacts f;
  walk(body, classifier, f, 0);
  if (f.too_deep) return make(StatementKind::Write, "statement too deeply nested");
  if (const json* into = member(body, "intoClause")) {
    return make(StatementKind::Write, "SELECT INTO", f.session_lock || temp_relation(member(*into, "rel")));
  }
  if (f.locking) return make(StatementKind::Write, "FOR UPDATE/SHARE", f.session_lock);
  if (f.modifying != nullptr) return make(StatementKind::Write, "data-modifying CTE", f.session_lock);
  if (f.write_call) return make(StatementKind::Write, "write function", f.session_lock);
  return make(StatementKind::Read, "SELECT");
}

Classification classify_transaction(const json& body) {
  const std::string_view kind = string_of(member(body, "kind"));
  if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START") {
    const int read_mode = read_mode_option(member(body, "options"));
    Classification c = make(StatementKind::TxBegin, "BEGIN", false, read_mode == 1);
    c.read_write = read_mode == 0;
    return c;
  }
  if (kind == "TRANS_STMT_COMMIT") return make(StatementKind::TxEnd, "COMMIT");
  if (kind == "TRANS_STMT_ROLLBACK") return make(StatementKind::TxEnd, "ROLLBACK");
  if (kind == "TRANS_STMT_PREPARE") return make(StatementKind::TxEnd, "PREPARE TRANSACTION");
  if (kind == "TRANS_STMT_COMMIT_PREPARED") return make(StatementKind::TxEnd, "COMMIT PREPARED");
  if (kind == "TRANS_STMT_ROLLBACK_PREPARED") return make(StatementKind::TxEnd, "ROLLBACK PREPARED");
  if (kind == "TRANS_STMT_SAVEPOINT") return make(StatementKind::Write, "SAVEPOINT");
  if (kind == "TRANS_STMT_RELEASE") return make(StatementKind::Write, "RELEASE SAVEPOINT");
  if (kind == "TRANS_STMT_ROLLBACK_TO") return make(StatementKind::Write, "ROLLBACK TO SAVEPOINT");
  return make(StatementKind::Write, "unrecognised transaction command");
}

struct TypeRule {
  std::string_view type;
  StatementKind kind;
  const char* reason;
  bool pins;
};

constexpr std::array<TypeRule, 22> kTypeRules = {{
    {"VariableShowStmt", StatementKind::Session, "SHOW", false},
    {"DiscardStmt", StatementKind::Session, "DISCARD", false},
    {"PrepareStmt", StatementKind::Session, "PREPARE", false},
    {"DeallocateStmt", StatementKind::Session, "DEALLOCATE", false},
    {"UnlistenStmt", StatementKind::Session, "UNLISTEN", false},
    {"LoadStmt", StatementKind::Session, "LOAD", false},
    {"ListenStmt", StatementKind::Session, "LISTEN", true},
    {"NotifyStmt", StatementKind::Write, "NOTIFY", false},
    {"ExecuteStmt", StatementKind::Write, "EXECUTE", false},
    {"FetchStmt", StatementKind::Write, "cursor command", false},
    {"ClosePortalStmt", StatementKind::Write, "cursor command", false},
    {"DoStmt", StatementKind::Write, "DO", false},
    {"CallStmt", StatementKind::Write, "CALL", false},
    {"LockStmt", StatementKind::Write, "LOCK", false},
    {"RefreshMatViewStmt", StatementKind::Write, "REFRESH MATERIALIZED VIEW", false},
    {"ClusterStmt", StatementKind::Write, "CLUSTER", false},
    {"ReindexStmt", StatementKind::Write, "REINDEX", false},
    {"CheckPointStmt", StatementKind::Write, "CHECKPOINT", false},
    {"TruncateStmt", StatementKind::Write, "TRUNCATE", false},
    {"InsertStmt", StatementKind::Write, "INSERT", false},
    {"UpdateStmt", StatementKind::Write, "UPDATE", false},
    {"DeleteStmt", StatementKind::Write, "DELETE", false},
}};

Classification classify_node(const json& node, const Classifier& classifier, int depth);

Classification classify_typed(std::string_view type, const json& body, const Classifier& classifier, int depth) {
  if (type == "SelectStmt") return classify_select(body, classifier);
  if (type == "TransactionStmt") return classify_transaction(body);
  if (type == "VariableSetStmt") {
    const std::string_view name = string_of(member(body, "name"));
    if (name == "TRANSACTION" || name == "SESSION CHARACTERISTICS") {
      return make(StatementKind::Session, "SET TRANSACTION", false, read_mode_option(member(body, "args")) == 1);
    }
    const std::string_view kind = string_of(member(body, "kind"));
    return make(StatementKind::Session, kind.starts_with("VAR_RESET") ? "RESET" : "SET");
  }
  if (type == "ExplainStmt") {
    if (!explain_analyzes(member(body, "options"))) return make(StatementKind::Read, "EXPLAIN");
    const json* query = member(body, "query");
    const Classification inner = query != nullptr ? classify_node(*query, classifier, depth + 1)
                                                  : make(StatementKind::Write, "EXPLAIN ANALYZE");
    if (inner.kind == StatementKind::Write) {
      return make(StatementKind::Write, "EXPLAIN ANALYZE of a write", inner.pins_primary);
    }
    return make(StatementKind::Read, "EXPLAIN ANALYZE");
  }
  if (type == "CopyStmt") {
    if (bool_of(member(body, "is_from"))) return make(StatementKind::Write, "COPY FROM");
    if (const json* query = member(body, "query")) {
      const Classification inner = classify_node(*query, classifier, depth + 1);
      if (inner.kind == StatementKind::Write) return make(StatementKind::Write, inner.reason, inner.pins_primary);
    }
    return make(StatementKind::Read, "COPY TO");
  }
  if (type == "DeclareCursorStmt") {
    return make(StatementKind::Write, "DECLARE CURSOR", (int_of(member(body, "options")) & kCursorOptHold) != 0);
  }
  if (type == "VacuumStmt") return make(StatementKind::Write, bool_of(member(body, "is_vacuumcmd")) ? "VACUUM" : "ANALYZE");
  if (type == "MergeStmt") return make(StatementKind::Write, "MERGE");
  // Temporary objects live in this session on this server.
  const json* created = nullptr;
  if (type == "CreateStmt") created = member(body, "relation");
  if (type == "CreateSeqStmt") created = member(body, "sequence");
  if (type == "ViewStmt") created = member(body, "view");
  if (type == "CreateTableAsStmt") {
    const json* into = member(body, "into");
    created = into != nullptr ? member(*into, "rel") : nullptr;
  }
  if (temp_relation(created)) return make(StatementKind::Write, "CREATE TEMP", true);

  for (const TypeRule& r : kTypeRules) {
    if (type == r.type) {
      Classification c = make(r.kind, r.reason, r.pins);
      if (r.kind == StatementKind::Write) {  // e.g. INSERT ... SELECT pg_advisory_lock(1)
        TreeFacts f;
        walk(body, classifier, f, depth + 1);
        c.pins_primary = c.pins_primary || f.session_lock;
      }
      return c;
    }
  }
  // Everything else is DDL or a utility command that changes state: the primary.
  return make(StatementKind::Write, "DDL");
}

Classification classify_node(const json& node, const Classifier& classifier, int depth) {
  if (depth > kMaxDepth || !node.is_object() || node.empty()) return make(StatementKind::Write, "unrecognised statement");
  const auto it = node.begin();
  return classify_typed(it.key(), it.value(), classifier, depth);
}

}  // namespace

Classification classify_parsed(std::string_view sql, const Classifier& classifier) {
  const std::string text(sql);  // libpg_query wants a NUL-terminated string
  PgQueryParseResult result = pg_query_parse(text.c_str());
  Classification out;
  if (result.error != nullptr || result.parse_tree == nullptr) {
    out = make(StatementKind::Write, "unparsable");
  } else {
    const json doc = json::parse(result.parse_tree, nullptr, /*allow_exceptions=*/false);
    const json* stmts = member(doc, "stmts");
    if (doc.is_discarded() || stmts == nullptr || !stmts->is_array()) {
      out = make(StatementKind::Write, "unreadable parse tree");
    } else {
      StatementCombiner combiner;
      for (const json& raw : *stmts) {
        const json* stmt = member(raw, "stmt");
        combiner.add(stmt != nullptr ? classify_node(*stmt, classifier, 0) : make(StatementKind::Write, "unrecognised statement"));
      }
      out = combiner.result();
    }
  }
  pg_query_free_parse_result(result);
  out.parsed = true;
  return out;
}

}  // namespace pgmux::routing
