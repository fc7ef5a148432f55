#include "proxy/client/session.hpp"

#include <strings.h>

#include <algorithm>
#include <utility>

#include "protocol/frontend_messages.hpp"
#include "protocol/statement_naming.hpp"
#include "routing/session_sql.hpp"
#include "routing/session_statement.hpp"
#include "routing/sql_prepared_refs.hpp"

namespace pgmux::proxy {

namespace {

// RESET ALL leaves the session's role and session authorization as they are (DISCARD ALL resets them too): the
// log's commands that set them, in order, replayed after it. From the last that sets the session authorization,
// which resets the role too (a SET ROLE before it may not replay under the new session user). False when a
// statement sets them beside other settings, which RESET ALL does reset: that session's state is unknown.
bool identity_commands(const std::vector<std::string>& log, std::vector<std::string>& kept) {
  bool known = true;
  for (const std::string& command : log) {
    const routing::Identity identity = routing::statement_session_facts(command).identity;
    known = known && identity != routing::Identity::Mixed;
    if (identity == routing::Identity::SessionAuthorization) kept.clear();
    if (identity == routing::Identity::Role || identity == routing::Identity::SessionAuthorization) {
      kept.push_back(command);
    }
  }
  return known;
}

}  // namespace

LogUpdate ClientSession::record_command(std::string sql, const routing::Classification& c,
                                        std::string_view reset_parameter, bool transaction_pooling) {
  const bool reset_all =
      c.effects.has(routing::SessionEffect::ResetAll) || c.effects.has(routing::SessionEffect::DiscardAll);
  std::vector<std::string> identity;
  bool identity_known = true;
  if (reset_all && !c.effects.has(routing::SessionEffect::DiscardAll)) {
    identity_known = identity_commands(log, identity);
  }
  if (transaction_pooling) {
    if (reset_all) {
      log.clear();
      ++log_generation;
      // Replayed elsewhere as RESET ALL: DISCARD ALL would also drop pgmux's shared prepared statements there.
      log.push_back("RESET ALL");
      for (const auto& [name, value] : wanted_params.entries()) log.push_back(routing::set_statement(name, value));
      log.insert(log.end(), identity.begin(), identity.end());
      // The runner ran the reset; the startup values and the identity follow before its next request.
      return {1, true, !identity_known};
    }
    const std::string_view target = c.effects.has(routing::SessionEffect::Reset) ? reset_parameter : "";
    if (const std::string* value = target.empty() ? nullptr : wanted_params.find(target)) {
      log.push_back(routing::set_statement(target, *value));
      return {log.size() - 1, false};  // the runner still needs the SET back to the startup value
    }
  }
  bool restart = false;
  if (reset_all) {
    log.clear();
    ++log_generation;
    restart = true;
  }
  log.push_back(std::move(sql));
  log.insert(log.end(), identity.begin(), identity.end());  // the runner kept its identity: applied
  return {log.size(), restart, !identity_known};
}

LogUpdate ClientSession::record_lasting(std::vector<TrackedStatement> lasting, size_t runner_applied,
                                        bool transaction_pooling) {
  LogUpdate total{runner_applied, false};
  for (TrackedStatement& command : lasting) {
    const size_t before = log.size();
    if (command.c.effects.has(routing::SessionEffect::DiscardAll)) route.session_unknown = false;
    note_isolation_default(command.c, command.reset_parameter);
    const LogUpdate update =
        record_command(std::move(command.sql), command.c, command.reset_parameter, transaction_pooling);
    const bool unknown = total.state_unknown || update.state_unknown;
    if (update.others_restart) {
      total = update;  // the log started again: older indices mean nothing
    } else if (total.runner_applied >= before) {
      total.runner_applied = update.runner_applied;  // the runner was up to date: it ran this one too
    }
    total.state_unknown = unknown;
  }
  return total;
}

void ClientSession::type_logged_prepare(const std::string& name, std::string_view types, size_t replayed) {
  for (size_t i = log.size(); i-- > replayed;) {
    const std::vector<routing::PreparedRef> refs = routing::prepared_statement_refs(log[i]);
    // Past a DEALLOCATE ALL, or a name that may be this one (U& escapes), the statement read is not older.
    const bool names_it = std::any_of(refs.begin(), refs.end(), [&](const routing::PreparedRef& ref) {
      return ref.name == name || ref.kind == routing::PreparedRefKind::DeallocateAll || ref.unicode_escapes;
    });
    if (!names_it) continue;
    // Its latest mention: the PREPARE the types were read behind, or the one still in force behind a PREPARE of
    // the name that failed (42P05). A DEALLOCATE of it (logged) means no such statement: nothing to type.
    if (refs.size() == 1 && refs.front().kind == routing::PreparedRefKind::Prepare && refs.front().name == name) {
      log[i] = routing::with_parameter_types(log[i], types);
    }
    return;
  }
}

bool ClientSession::starts_serializable() const {
  const std::string* level = wanted_params.find("default_transaction_isolation");
  return level && level->size() == 12 && strncasecmp(level->c_str(), "serializable", 12) == 0;
}

bool ClientSession::resets_to_serializable() const {
  if (wanted_params.find("default_transaction_isolation")) return starts_serializable();
  return route.serializable_server_default;
}

void ClientSession::note_isolation_default(const routing::Classification& c, std::string_view reset_parameter) {
  using routing::SessionEffect;
  if (c.effects.has(SessionEffect::Set) && c.isolation != routing::Isolation::Unchanged) {
    route.serializable_default = c.serializable();
  } else if (c.effects.has(SessionEffect::ResetAll) || c.effects.has(SessionEffect::DiscardAll) ||
             (c.effects.has(SessionEffect::Reset) && reset_parameter == "default_transaction_isolation")) {
    route.serializable_default = resets_to_serializable();
  }
}

const ClientSession::TextFacts& ClientSession::text_facts() const {
  if (text_facts_.generation == log_generation && text_facts_.log_size == log.size()) return text_facts_;
  uint64_t hash = protocol::kFnvOffset;
  bool any = false;
  const auto mix = [&](std::string_view text) {
    hash = protocol::fnv1a(protocol::fnv1a(hash, text), std::string_view("\0", 1));  // "ab","c" is not "a","bc"
    any = true;
  };
  for (const auto& [name, value] : wanted_params.entries()) {
    if (!routing::affects_statement_analysis(name)) continue;
    if (name == "client_encoding" && value == "UTF8") continue;  // what a UTF8 database's sessions have unasked
    mix(name);
    mix(value);
  }
  std::vector<std::string> commands;
  for (const std::string& command : log) {
    if (!routing::replayable_setting_command(command) || !routing::may_affect_statement_analysis(command)) continue;
    mix(command);
    commands.push_back(command);
  }
  text_facts_ = {log_generation, log.size(), nullptr};
  if (any) {
    auto settings = std::make_shared<ParseSettings>();
    settings->key = hash | 1;
    settings->commands = std::move(commands);
    text_facts_.settings = std::move(settings);
  }
  return text_facts_;
}

namespace {

// The key of the session's settings followed by the open block's changes to them.
uint64_t block_settings_key(uint64_t session_key, const std::vector<std::string>& block_commands) {
  uint64_t hash = protocol::fnv1a(protocol::kFnvOffset,
                                  std::string_view(reinterpret_cast<const char*>(&session_key), sizeof session_key));
  for (const std::string& command : block_commands) {
    hash = protocol::fnv1a(protocol::fnv1a(hash, command), std::string_view("\0", 1));
  }
  return hash | 1;
}

}  // namespace

uint64_t ClientSession::parse_settings_key() const {
  const std::vector<std::string>& in_block = block.analysis_commands();
  return in_block.empty() ? analysis_settings_key() : block_settings_key(analysis_settings_key(), in_block);
}

std::shared_ptr<const ParseSettings> ClientSession::parse_settings() const {
  const TextFacts& facts = text_facts();
  const std::vector<std::string>& in_block = block.analysis_commands();
  if (in_block.empty()) return facts.settings;
  auto settings = std::make_shared<ParseSettings>();
  settings->key = block_settings_key(facts.settings ? facts.settings->key : 0, in_block);
  if (facts.settings) settings->commands = facts.settings->commands;
  settings->commands.insert(settings->commands.end(), in_block.begin(), in_block.end());
  return settings;
}

PreparedStatement& ClientSession::remember(const ParsedStatement& parse, const routing::Classification& c,
                                           bool shared_name, uint64_t now_ns, uint64_t request) {
  PreparedStatement& stored = statements_[std::string(parse.name)];
  stored.classification = c;
  stored.parse.assign(parse.message.begin(), parse.message.end());  // parameter types included
  stored.settings = parse_settings();
  stored.server_name =
      shared_name ? protocol::server_statement_name(parse.message, stored.settings_key()) : std::string();
  stored.confirmed = false;
  stored.shape = 0;
  stored.parameter_types.clear();
  stored.parsed_at = now_ns;
  stored.made_by_request = request;
  return stored;
}

bool pin_parameter_types(PreparedStatement& stored) {
  using protocol::ByteView;
  const ByteView message(stored.parse);
  if (stored.parameter_types.size() < 2 || message.size() < 5) return false;
  const std::optional<protocol::ParseMessage> parse = protocol::parse_parse(message.subspan(5));
  if (!parse) return false;
  const ByteView resolved = ByteView(stored.parameter_types).subspan(2);
  const bool spelled_out = parse->parameter_type_bytes.size() == resolved.size() &&
                           std::equal(resolved.begin(), resolved.end(), parse->parameter_type_bytes.begin());
  if (spelled_out) return false;
  std::vector<int32_t> types(resolved.size() / 4);
  for (size_t i = 0; i < types.size(); ++i) types[i] = int32_t(protocol::load_be32(resolved.data() + 4 * i));
  protocol::ByteVector typed;
  protocol::build_parse(typed, parse->statement, parse->sql, types);
  stored.parse = std::move(typed);
  if (!stored.server_name.empty()) {
    stored.server_name = protocol::server_statement_name(stored.parse, stored.settings_key());
  }
  return true;
}

const PreparedStatement* ClientSession::find_statement(std::string_view name) const {
  if (const StatementMap::value_type* last = last_found_.get(name)) return &last->second;
  auto it = statements_.find(name);
  if (it == statements_.end()) return nullptr;
  last_found_.set(&*it);  // nodes stay where they are when the map grows or rehashes
  return &it->second;
}

PreparedStatement* ClientSession::find_statement(std::string_view name) {
  return const_cast<PreparedStatement*>(std::as_const(*this).find_statement(name));  // the map is this one's
}

void ClientSession::erase_statement(std::string_view name) {
  auto it = statements_.find(name);
  if (it == statements_.end()) return;
  last_found_.forget();
  statements_.erase(it);
}

std::optional<PreparedStatement> ClientSession::take_statement(std::string_view name) {
  auto it = statements_.find(name);
  if (it == statements_.end()) return std::nullopt;
  last_found_.forget();
  std::optional<PreparedStatement> taken(std::move(it->second));
  statements_.erase(it);
  return taken;
}

void ClientSession::restore_statement(std::string_view name, PreparedStatement&& statement) {
  if (statement.made_by_request < cleared_before_) return;  // a DISCARD ALL / DEALLOCATE ALL since dropped it
  last_found_.forget();
  statements_.try_emplace(std::string(name), std::move(statement));
}

const std::string* ClientSession::name_of_server_statement(std::string_view server_name) const {
  for (const auto& [name, statement] : statements_) {
    if (statement.server_name == server_name) return &name;
  }
  return nullptr;
}

void ClientSession::clear_statements_before(uint64_t request) {
  cleared_before_ = std::max(cleared_before_, request);
  last_found_.forget();
  std::erase_if(statements_, [request](const auto& entry) { return entry.second.made_by_request < request; });
}

}  // namespace pgmux::proxy
