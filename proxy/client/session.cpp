#include "proxy/client/session.hpp"

#include "proxy/client/sql_text.hpp"

namespace pgmux::proxy {

LogUpdate ClientSession::record_command(std::string sql, bool transaction_pooling) {
  const bool reset_all = resets_all_settings(sql);
  if (transaction_pooling) {
    const std::string target = reset_all ? std::string() : reset_target(sql);
    if (reset_all) {
      log.clear();
      // Replayed elsewhere as RESET ALL: DISCARD ALL would also drop pgmux's shared prepared statements there.
      log.push_back("RESET ALL");
      for (const auto& [name, value] : wanted_params.entries()) log.push_back(set_statement(name, value));
      return {1, true};  // the runner ran the reset; the startup values follow before its next request
    }
    if (const std::string* value = target.empty() ? nullptr : wanted_params.find(target)) {
      log.push_back(set_statement(target, *value));
      return {log.size() - 1, false};  // the runner still needs the SET back to the startup value
    }
  }
  bool restart = false;
  if (reset_all) {
    log.clear();
    restart = true;
  }
  log.push_back(std::move(sql));
  return {log.size(), restart};
}

const PreparedStatement& ClientSession::remember(const ParsedStatement& parse, const routing::Classification& c,
                                                 bool transaction_pooling) {
  PreparedStatement& stored = statements[std::string(parse.name)];
  stored.classification = c;
  stored.parse.assign(parse.message.begin(), parse.message.end());  // parameter types included
  stored.server_name = transaction_pooling ? server_statement_name(parse.message) : std::string();
  return stored;
}

const PreparedStatement* ClientSession::find_statement(std::string_view name) const {
  auto it = statements.find(std::string(name));
  return it == statements.end() ? nullptr : &it->second;
}

}  // namespace pgmux::proxy
