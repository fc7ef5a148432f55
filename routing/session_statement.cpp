#include "routing/session_statement.hpp"

#include <pg_query.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "routing/parse_tree.hpp"

namespace pgmux::routing {
namespace {

using nlohmann::json;
using parse_tree::member;
using parse_tree::string_of;

TransactionCommand transaction_command(std::string_view kind) {
  if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START") return TransactionCommand::Begin;
  if (kind == "TRANS_STMT_COMMIT") return TransactionCommand::Commit;
  if (kind == "TRANS_STMT_ROLLBACK") return TransactionCommand::Rollback;
  if (kind == "TRANS_STMT_SAVEPOINT") return TransactionCommand::Savepoint;
  if (kind == "TRANS_STMT_RELEASE") return TransactionCommand::Release;
  if (kind == "TRANS_STMT_ROLLBACK_TO") return TransactionCommand::RollbackTo;
  return TransactionCommand::Other;
}

// A constant, or a constant with a cast ('x'::text): the same value wherever it runs.
bool is_constant(const json& node) {
  if (member(node, "A_Const") != nullptr) return true;
  const json* cast = member(node, "TypeCast");
  const json* arg = cast != nullptr ? member(*cast, "arg") : nullptr;
  return arg != nullptr && member(*arg, "A_Const") != nullptr;
}

// set_config(constant, constant, constant), optionally schema-qualified.
bool is_constant_set_config(const json& node) {
  const json* call = member(node, "FuncCall");
  const json* names = call != nullptr ? member(*call, "funcname") : nullptr;
  if (names == nullptr || !names->is_array() || names->empty()) return false;
  const json* last = member(names->back(), "String");
  if (string_of(last != nullptr ? member(*last, "sval") : nullptr) != "set_config") return false;
  const json* args = member(*call, "args");
  if (args == nullptr || !args->is_array() || args->size() != 3) return false;
  for (const json& arg : *args) {
    if (!is_constant(arg)) return false;
  }
  return true;
}

// SELECT set_config(...), ... with nothing else: no FROM, WHERE, CTE, set operation or other target, so each
// call runs exactly once and replaying the statement does exactly what it did.
bool is_set_config_select(const json& select) {
  static constexpr std::array<std::string_view, 3> kAllowed = {"targetList", "op", "limitOption"};
  for (auto it = select.begin(); it != select.end(); ++it) {
    bool allowed = false;
    for (std::string_view key : kAllowed) allowed = allowed || it.key() == key;
    if (!allowed) return false;
  }
  if (string_of(member(select, "op")) != "SETOP_NONE") return false;
  const json* targets = member(select, "targetList");
  if (targets == nullptr || !targets->is_array() || targets->empty()) return false;
  for (const json& target : *targets) {
    const json* res = member(target, "ResTarget");
    const json* value = res != nullptr ? member(*res, "val") : nullptr;
    if (value == nullptr || !is_constant_set_config(*value)) return false;
  }
  return true;
}

// The parameter a set_config call sets, lowercased ("" when not a constant string). `node` is a target of a
// SELECT of set_config calls (is_set_config_select, checked first: each a set_config call of three constants).
std::string set_config_parameter(const json& target) {
  const json* call = member(*member(*member(target, "ResTarget"), "val"), "FuncCall");
  const json* first = call != nullptr ? &(*member(*call, "args"))[0] : nullptr;
  const json* cast = first != nullptr ? member(*first, "TypeCast") : nullptr;
  if (cast != nullptr) first = member(*cast, "arg");
  const json* constant = first != nullptr ? member(*first, "A_Const") : nullptr;
  const json* sval = constant != nullptr ? member(*constant, "sval") : nullptr;
  std::string name(string_of(sval != nullptr ? member(*sval, "sval") : nullptr));
  for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return name;
}

Identity identity_of_parameter(std::string_view name) {
  if (name == "role") return Identity::Role;
  return name == "session_authorization" ? Identity::SessionAuthorization : Identity::None;
}

// A SELECT of set_config calls: whom it makes the session, if all of its calls do; Mixed beside other settings
// (RESET ALL undoes those, not these: the statement cannot be kept or dropped whole).
Identity set_config_identity(const json& select) {
  Identity identity = Identity::None;
  bool others = false;
  for (const json& target : *member(select, "targetList")) {
    const Identity one = identity_of_parameter(set_config_parameter(target));
    others = others || one == Identity::None;
    if (one == Identity::SessionAuthorization || (one == Identity::Role && identity == Identity::None)) {
      identity = one;
    }
  }
  return identity != Identity::None && others ? Identity::Mixed : identity;
}

// Session commands that do exactly the same when run again on another server.
bool is_session_command(std::string_view type) {
  static constexpr std::array<std::string_view, 9> kTypes = {
      "VariableSetStmt", "VariableShowStmt", "DiscardStmt", "PrepareStmt",        "DeallocateStmt",
      "ListenStmt",      "UnlistenStmt",     "LoadStmt",    "ConstraintsSetStmt",
  };
  for (std::string_view t : kTypes) {
    if (type == t) return true;
  }
  return false;
}

StatementSessionFacts facts_of(const json& stmt) {
  StatementSessionFacts facts;
  if (!stmt.is_object() || stmt.empty()) return facts;
  const std::string_view type = stmt.begin().key();
  const json& body = stmt.begin().value();
  if (type == "TransactionStmt") {
    facts.transaction = transaction_command(string_of(member(body, "kind")));
    facts.savepoint = std::string(string_of(member(body, "savepoint_name")));
    const json* chain = member(body, "chain");
    facts.chain = chain != nullptr && chain->is_boolean() && chain->get<bool>();
  } else if (type == "VariableSetStmt") {
    facts.identity = identity_of_parameter(string_of(member(body, "name")));
  } else if (type == "SelectStmt" && is_set_config_select(body)) {
    facts.identity = set_config_identity(body);
  } else if (!is_session_command(type)) {
    // DO, CALL, or set_config inside another statement: what it changed cannot be told, and replaying it would
    // run the rest again.
    facts.replay = SessionReplay::Unknown;
  }
  return facts;
}

}  // namespace

StatementSessionFacts statement_session_facts(std::string_view statement) {
  const std::string text(statement);  // libpg_query wants a NUL-terminated string
  PgQueryParseResult result = pg_query_parse(text.c_str());
  StatementSessionFacts facts;
  if (result.error != nullptr) {
    // Text the server ran (a failed statement is never asked about) that the parser rejects: read under other
    // settings (standard_conforming_strings off, a client encoding), its effect is unknown, and replaying it could
    // run anything (an INSERT) again.
    facts.replay = SessionReplay::Unknown;
  } else if (result.parse_tree != nullptr) {
    const json doc = json::parse(result.parse_tree, nullptr, /*allow_exceptions=*/false);
    const json* stmts = member(doc, "stmts");
    if (!doc.is_discarded() && stmts != nullptr && stmts->is_array() && stmts->size() == 1) {
      const json* stmt = member((*stmts)[0], "stmt");
      if (stmt != nullptr) facts = facts_of(*stmt);
    } else if (stmts != nullptr && stmts->is_array() && stmts->size() > 1) {
      facts.replay = SessionReplay::Unknown;  // the caller splits strings: not expected
    }
  }
  pg_query_free_parse_result(result);
  return facts;
}

bool sets_session_authorization(std::string_view statement) {
  constexpr std::string_view kWord = "authorization";
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  const auto found = std::search(statement.begin(), statement.end(), kWord.begin(), kWord.end(),
                                 [&](char a, char b) { return lower(a) == b; });
  return found != statement.end() && statement_session_facts(statement).identity == Identity::SessionAuthorization;
}

}  // namespace pgmux::routing
