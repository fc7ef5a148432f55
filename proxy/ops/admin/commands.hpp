// The admin console's command table (DESIGN.md §3.11): each command is its words, who may run it, where it
// runs and a handler that turns its arguments and a context into an Answer, with no I/O of its own.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "proxy/ops/admin/answer.hpp"
#include "proxy/ops/snapshot.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {
class Control;
class Worker;
struct SharedState;
}  // namespace pgmux::proxy

namespace pgmux::proxy::admin {

enum class Access : uint8_t { Read, Change };  // stats_users may Read; admin_users may both
enum class Runs : uint8_t {
  Here,           // on the admin client's worker, at once
  WithSnapshots,  // on that worker, once every worker's snapshot is in
  OnControl,      // on the control loop (reloads, backend overrides, shutdown)
};

struct Input {
  std::vector<std::string> args;  // the words after the command's own, as typed
  std::string rest;               // the text after the command's words, trimmed (SET's assignment, EXPLAIN's SQL)
};

struct Context {
  SharedState& shared;
  std::shared_ptr<const conf::Config> config;
  std::shared_ptr<const routing::BackendsView> view;
  Worker* worker = nullptr;                              // Here and WithSnapshots
  const std::vector<WorkerSnapshot>* snapshots = nullptr;  // WithSnapshots
  Control* control = nullptr;                            // OnControl
  // OnControl: sends an answer later, from the control loop (a handler that returned Answer::deferred()).
  std::function<void(Answer)> reply = nullptr;
  uint64_t client_id = 0;                                // the admin session's own id
};

using Handler = Answer (*)(const Input&, Context&);

struct Command {
  const char* words;        // "SHOW POOLS"
  const char* syntax;       // for SHOW HELP: "SHOW POOLS"
  const char* description;  // for SHOW HELP
  Access access;
  Runs runs;
  Handler handler;
};

// Every command, in SHOW HELP order.
const std::vector<Command>& command_table();

// A database argument in double quotes read as PostgreSQL reads an identifier ("app" is app, "a""b" is a"b); any
// other word as typed, case included: database names are case-sensitive, as in PgBouncer's console.
std::string unquote_identifier(std::string_view word);

// The command whose words start `sql` (case-insensitive; the longest match), with its input; null when none.
const Command* find_command(std::string_view sql, Input* input);

// Handlers, by family (show_connections.cpp, show_stats.cpp, show_settings.cpp, show_backends.cpp,
// control_commands.cpp, explain_route.cpp).
Answer show_pools(const Input&, Context&);
Answer show_backend_pools(const Input&, Context&);
Answer show_stats_totals(const Input&, Context&);
Answer show_stats_averages(const Input&, Context&);
Answer show_totals(const Input&, Context&);
Answer show_mem(const Input&, Context&);
Answer show_fds(const Input&, Context&);
Answer show_clients(const Input&, Context&);
Answer show_servers(const Input&, Context&);
Answer show_stats(const Input&, Context&);
Answer show_lists(const Input&, Context&);
Answer show_databases(const Input&, Context&);
Answer show_users(const Input&, Context&);
Answer show_config(const Input&, Context&);
Answer show_version(const Input&, Context&);
Answer show_help(const Input&, Context&);
Answer show_backends(const Input&, Context&);
Answer pause_command(const Input&, Context&);
Answer resume_command(const Input&, Context&);
Answer reconnect_command(const Input&, Context&);
Answer reload_command(const Input&, Context&);
Answer set_command(const Input&, Context&);
Answer enable_backend(const Input&, Context&);
Answer disable_backend(const Input&, Context&);
Answer set_backend_weight(const Input&, Context&);
Answer kill_client(const Input&, Context&);
Answer shutdown_command(const Input&, Context&);
Answer switchover_command(const Input&, Context&);
Answer check_consistency_command(const Input&, Context&);
Answer explain_route(const Input&, Context&);

// Shared by handlers: "backend index n" argument parsing with a clear error.
bool parse_backend_index(const Input& input, size_t position, const conf::Config& config, int* index,
                         Answer* error);

}  // namespace pgmux::proxy::admin
