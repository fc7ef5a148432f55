// ClientConn, statements prepared under the settings of their Parse. PostgreSQL reads a statement's literals under
// the TimeZone, DateStyle, IntervalStyle... of its Parse and keeps what they meant; a statement parsed again
// elsewhere after the client changed them would mean something else (and, in transaction pooling, its shared copy
// would then serve other clients of the old settings under their name). So a server that lacks such a statement
// goes back to the settings of its Parse inside a transaction (or savepoint) rolled back once it is prepared:
// protocol-level prepared statements are not transactional and survive the rollback. SQL PREPAREs made through
// pgmux go back to their point of the session log the same way (client_sql_statements.cpp).
#include <algorithm>

#include "protocol/frontend_messages.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/server/server_conn.hpp"
#include "routing/session_sql.hpp"
#include "routing/session_statement.hpp"

namespace pgmux::proxy {

using namespace protocol;

// Ends the transaction or savepoint settings_reset_queries opened: what the server had before comes back.
std::vector<std::string> ClientConn::settings_restore_queries(bool in_block) {
  if (in_block) return {"ROLLBACK TO SAVEPOINT pgmux_prepare", "RELEASE SAVEPOINT pgmux_prepare"};
  return {"ROLLBACK"};
}

// A transaction (inside the client's block: a savepoint) in which the server has the client's startup settings,
// and none of the session's changes to them. RESET ALL leaves the role and the session authorization: they go back
// to the login's too, as PostgreSQL checks a statement's schemas under them (USAGE) at its parse. The session
// authorization only where the session set it: before PostgreSQL 15.10 (CVE-2024-10978) rolling back its change
// could clear the role the rollback restores.
std::vector<std::string> ClientConn::settings_reset_queries(bool in_block) const {
  std::vector<std::string> queries{in_block ? "SAVEPOINT pgmux_prepare" : "BEGIN", "RESET ALL"};
  if (session_.wanted_params.find("session_authorization") != nullptr ||
      std::any_of(session_.log.begin(), session_.log.end(),
                  [](const std::string& command) { return routing::sets_session_authorization(command); })) {
    queries.emplace_back("SET SESSION AUTHORIZATION DEFAULT");
  }
  queries.emplace_back("RESET ROLE");
  for (const auto& [name, value] : session_.wanted_params.entries()) {
    queries.push_back(routing::set_statement(name, value));
  }
  return queries;
}

// The statements add_session_statement set aside (PrepareStep::reparsed), each prepared under the settings of its
// Parse (PreparedStatement::settings): the reset above, the commands that made those settings, its Parse (and
// Describe, as any), then the rollback. Inside the client's block, a statement that failed to prepare must fail
// the block as its use would have on PostgreSQL: a Describe of each behind the rollbacks (26000 for one that is
// not there; nothing otherwise). The first error is the one the client is told. Returns the ReadyForQuery replies
// they make; `step.prepared` lists them after the statements prepared before them.
int ClientConn::add_reparsed_statements(ServerConn* server, ByteVector& messages, PrepareStep& step, bool in_block) {
  int readies = 0;
  std::vector<std::string_view> checks;  // views into the session's statements, which stay put here
  for (const std::string& client_name : step.reparsed) {
    const PreparedStatement* stored = session_.find_statement(client_name);
    if (!stored) continue;
    ByteVector parse;  // first: one that cannot be renamed is not sent, and nothing around it either
    if (!append_statement_parse(server, client_name, parse)) continue;
    std::vector<std::string> queries = settings_reset_queries(in_block);
    if (stored->settings) {
      queries.insert(queries.end(), stored->settings->commands.begin(), stored->settings->commands.end());
    }
    for (const std::string& query : queries) build_query(messages, query);
    readies += static_cast<int>(queries.size());
    messages.insert(messages.end(), parse.begin(), parse.end());
    build_sync(messages);
    ++readies;
    for (const std::string& query : settings_restore_queries(in_block)) {
      build_query(messages, query);
      ++readies;
    }
    step.prepared.push_back(client_name);
    checks.push_back(statement_on_server(*stored, client_name));
  }
  if (in_block && !checks.empty()) {
    for (const std::string_view name : checks) build_describe(messages, 'S', name);
    build_sync(messages);
    ++readies;
  }
  return readies;
}

}  // namespace pgmux::proxy
