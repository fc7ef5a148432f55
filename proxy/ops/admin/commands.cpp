#include "proxy/ops/admin/commands.hpp"

#include <cctype>

#include "protocol/sqlstate.hpp"

namespace pgmux::proxy::admin {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && (is_space(s.back()) || s.back() == ';')) s.remove_suffix(1);
  return s;
}

// Splits on whitespace outside double quotes (PAUSE "my db" names one database); the positions let a command keep
// the raw text after its words.
std::vector<std::pair<std::string_view, size_t>> words_of(std::string_view s) {
  std::vector<std::pair<std::string_view, size_t>> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    const size_t start = i;
    bool quoted = false;  // "" inside quotes toggles twice: it stays quoted
    for (; i < s.size() && (quoted || !is_space(s[i])); ++i) quoted = quoted != (s[i] == '"');
    if (i > start) out.emplace_back(s.substr(start, i - start), start);
  }
  return out;
}

bool same_word(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

}  // namespace

const std::vector<Command>& command_table() {
  static const std::vector<Command> table = {
      {"SHOW HELP", "SHOW HELP", "this list", Access::Read, Runs::Here, show_help},
      {"SHOW VERSION", "SHOW VERSION", "pgmux version", Access::Read, Runs::Here, show_version},
      {"SHOW POOLS", "SHOW POOLS", "one row per (database, user), PgBouncer's columns: clients and servers by state",
       Access::Read, Runs::WithSnapshots, show_pools},
      {"SHOW BACKEND_POOLS", "SHOW BACKEND_POOLS", "one row per pool (database, user, backend) with its role",
       Access::Read, Runs::WithSnapshots, show_backend_pools},
      {"SHOW CLIENTS", "SHOW CLIENTS", "one row per client connection", Access::Read, Runs::WithSnapshots,
       show_clients},
      {"SHOW SERVERS", "SHOW SERVERS", "one row per server connection", Access::Read, Runs::WithSnapshots,
       show_servers},
      {"SHOW STATS", "SHOW STATS", "totals per database: transactions, queries, bytes, times", Access::Read,
       Runs::WithSnapshots, show_stats},
      {"SHOW STATS_TOTALS", "SHOW STATS_TOTALS", "SHOW STATS' totals", Access::Read, Runs::WithSnapshots,
       show_stats_totals},
      {"SHOW STATS_AVERAGES", "SHOW STATS_AVERAGES", "SHOW STATS' averages", Access::Read, Runs::WithSnapshots,
       show_stats_averages},
      {"SHOW TOTALS", "SHOW TOTALS", "SHOW STATS over all databases, one row per figure", Access::Read,
       Runs::WithSnapshots, show_totals},
      {"SHOW MEM", "SHOW MEM", "connection and pool objects: size, count, bytes", Access::Read,
       Runs::WithSnapshots, show_mem},
      {"SHOW FDS", "SHOW FDS", "one row per client and server socket", Access::Read, Runs::WithSnapshots,
       show_fds},
      {"SHOW LISTS", "SHOW LISTS", "counts of databases, users, pools, clients and servers", Access::Read,
       Runs::WithSnapshots, show_lists},
      {"SHOW DATABASES", "SHOW DATABASES", "configured databases with pool settings and connections",
       Access::Read, Runs::WithSnapshots, show_databases},
      {"SHOW USERS", "SHOW USERS", "configured users", Access::Read, Runs::WithSnapshots, show_users},
      {"SHOW CONFIG", "SHOW CONFIG", "every setting, its value and whether SET can change it", Access::Read,
       Runs::Here, show_config},
      {"SHOW BACKENDS", "SHOW BACKENDS", "backends: role, health, weight, lag, why a standby gets no reads",
       Access::Read, Runs::WithSnapshots, show_backends},
      {"SHOW POOL_NODES", "SHOW POOL_NODES", "alias of SHOW BACKENDS (Pgpool-II's name)", Access::Read,
       Runs::WithSnapshots, show_backends},
      {"EXPLAIN ROUTE", "EXPLAIN ROUTE <sql>", "where pgmux would send <sql> now, and why", Access::Read,
       Runs::Here, explain_route},
      {"PAUSE", "PAUSE [db]", "wait for running transactions to finish, then hold new ones", Access::Change,
       Runs::Here, pause_command},
      {"RESUME", "RESUME [db]", "release what PAUSE holds", Access::Change, Runs::Here, resume_command},
      {"RECONNECT", "RECONNECT [db]",
       "replace server connections (idle ones now, busy ones when released): ALTER ROLE/DATABASE SET reach them",
       Access::Change, Runs::Here, reconnect_command},
      {"RELOAD", "RELOAD", "re-read the config file (an invalid file changes nothing)", Access::Change,
       Runs::OnControl, reload_command},
      {"SET BACKEND", "SET BACKEND <n> WEIGHT <w>", "change a backend's read weight until the next RELOAD",
       Access::Change, Runs::OnControl, set_backend_weight},
      {"SET", "SET <key> = <value>", "change a live setting until the next RELOAD (SHOW CONFIG lists them)",
       Access::Change, Runs::OnControl, set_command},
      {"ENABLE BACKEND", "ENABLE BACKEND <n>", "let a disabled backend take reads again", Access::Change,
       Runs::OnControl, enable_backend},
      {"DISABLE BACKEND", "DISABLE BACKEND <n>", "drain a standby: no new reads, running transactions finish",
       Access::Change, Runs::OnControl, disable_backend},
      {"KILL_CLIENT", "KILL_CLIENT <id>", "disconnect one client (id from SHOW CLIENTS)", Access::Change,
       Runs::WithSnapshots, kill_client},
      {"SWITCHOVER", "SWITCHOVER [TO <backend>]",
       "planned change of primary: hold writes, let transactions finish, promote the standby, answer when done",
       Access::Change, Runs::OnControl, switchover_command},
      {"CHECK CONSISTENCY", "CHECK CONSISTENCY [ON <database>] [table ...]",
       "compare row counts and checksums of tables between the primary and each standby, at one WAL position",
       Access::Change, Runs::OnControl, check_consistency_command},
      {"SHUTDOWN", "SHUTDOWN [WAIT_FOR_CLIENTS]", "stop pgmux now, or after sessions finish", Access::Change,
       Runs::OnControl, shutdown_command},
  };
  return table;
}

// A double-quoted word as PostgreSQL reads an identifier ("app" is app, "a""b" is a"b); any other word as typed,
// case included: database and backend names are case-sensitive, as in PgBouncer's console.
std::string unquote_identifier(std::string_view word) {
  if (word.size() < 2 || word.front() != '"' || word.back() != '"') return std::string(word);
  std::string out;
  for (size_t i = 1; i + 1 < word.size(); ++i) {
    out += word[i];
    if (word[i] == '"' && i + 2 < word.size() && word[i + 1] == '"') ++i;
  }
  return out;
}

const Command* find_command(std::string_view sql, Input* input) {
  const std::string_view text = trim(sql);
  const auto words = words_of(text);
  const Command* best = nullptr;
  size_t best_words = 0;
  for (const Command& command : command_table()) {
    const auto own = words_of(command.words);
    if (own.size() > words.size() || own.size() <= best_words) continue;
    bool match = true;
    for (size_t i = 0; i < own.size() && match; ++i) match = same_word(own[i].first, words[i].first);
    if (match) {
      best = &command;
      best_words = own.size();
    }
  }
  if (!best) return nullptr;
  input->args.clear();
  for (size_t i = best_words; i < words.size(); ++i) input->args.emplace_back(words[i].first);
  input->rest = best_words < words.size() ? std::string(trim(text.substr(words[best_words].second))) : "";
  return best;
}

bool parse_backend_index(const Input& input, size_t position, const conf::Config& config, int* index,
                         Answer* error) {
  const std::string hint = "SHOW BACKENDS lists each backend's node_id (0.." +
                           std::to_string(config.backends.empty() ? 0 : config.backends.size() - 1) + ")";
  if (position >= input.args.size()) {
    *error = Answer::fail(protocol::sqlstate::kSyntaxError, "a backend number is missing", hint);
    return false;
  }
  const std::string& text = input.args[position];
  int value = 0;
  bool digits = !text.empty() && text.size() < 6;
  for (char c : text) {
    digits = digits && c >= '0' && c <= '9';
  }
  if (digits) value = std::stoi(text);
  if (!digits || static_cast<size_t>(value) >= config.backends.size()) {
    *error = Answer::fail(protocol::sqlstate::kUndefinedObject, "there is no backend \"" + text + "\"", hint);
    return false;
  }
  *index = value;
  return true;
}

}  // namespace pgmux::proxy::admin
