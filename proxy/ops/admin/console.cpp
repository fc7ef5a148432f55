#include "proxy/ops/admin/console.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

#include "protocol/backend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/ops/admin/commands.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/control/control.hpp"
#include "proxy/net/log.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

using admin::Answer;

void deliver_admin_answer(Worker& worker, uint64_t client_id, protocol::ByteVector bytes) {
  ClientConn* client = worker.find_client(client_id);
  if (client && client->is_admin()) client->on_admin_answer(std::move(bytes));
}

AdminConsole::AdminConsole(Worker& worker, uint64_t client_id, std::string user)
    : worker_(worker), client_id_(client_id), user_(std::move(user)) {}

void AdminConsole::answer(const Answer& answer) {
  protocol::ByteVector out;
  admin::encode(answer, out);
  deliver_admin_answer(worker_, client_id_, std::move(out));
}

namespace {

// A database name in double quotes (PAUSE, RESUME, RECONNECT) is an identifier as PostgreSQL reads one: closed,
// not empty and with nothing glued behind its closing quote (42601 as PostgreSQL's scanner answers). Unchecked,
// `PAUSE "app` asked for a database named "app with its quote. Other commands' arguments are not names (EXPLAIN ROUTE's SQL may hold a quote in a literal).
std::optional<Answer> quoting_error(const admin::Command& command, const admin::Input& input) {
  const bool names_database = command.handler == admin::pause_command || command.handler == admin::resume_command ||
                              command.handler == admin::reconnect_command;
  for (const std::string& arg : names_database ? input.args : std::vector<std::string>{}) {
    if (arg.empty() || arg.front() != '"') continue;
    size_t i = 1;
    bool closed = false;
    while (i < arg.size() && !closed) {
      if (arg[i] != '"') {
        ++i;
      } else if (i + 1 < arg.size() && arg[i + 1] == '"') {
        i += 2;  // a doubled quote inside
      } else {
        closed = true;
        ++i;
      }
    }
    if (!closed) {
      return Answer::fail(protocol::sqlstate::kSyntaxError,
                          "unterminated quoted identifier at or near \"" + arg + "\"");
    }
    if (arg.starts_with("\"\"") && i == 2) {
      return Answer::fail(protocol::sqlstate::kSyntaxError, "zero-length delimited identifier at or near \"\"\"\"");
    }
    if (i < arg.size()) {  // "app"x: PostgreSQL's scanner ends the identifier at its quote and stops at the rest
      return Answer::fail(protocol::sqlstate::kSyntaxError, "syntax error at or near \"" + arg.substr(i) + "\"");
    }
  }
  return std::nullopt;
}

// What the log keeps of a command (every one, the refused too: an audit trail): up to its first ';' (the console
// runs one command; what follows is SQL sent there by mistake, which may carry a secret: SET x = 1; ALTER ROLE ...
// PASSWORD '...'), and of an unknown command only its leading letters.
std::string_view audit_text(std::string_view text, const admin::Command* command) {
  if (command) return text.substr(0, text.find(';'));
  const auto letters = std::find_if_not(text.begin(), text.end(), [](char c) { return std::isalpha(c & 0xff); });
  return text.substr(0, static_cast<size_t>(letters - text.begin()));
}

}  // namespace

void AdminConsole::execute(std::string_view sql) {
  std::string_view trimmed = sql;
  while (!trimmed.empty() && (std::isspace(static_cast<unsigned char>(trimmed.back())) || trimmed.back() == ';')) {
    trimmed.remove_suffix(1);
  }
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.remove_prefix(1);
  if (trimmed.empty()) {
    protocol::ByteVector out;
    protocol::build_empty_query_response(out);
    protocol::build_ready_for_query(out, 'I');
    deliver_admin_answer(worker_, client_id_, std::move(out));
    return;
  }
  admin::Input input;
  const admin::Command* command = admin::find_command(trimmed, &input);
  const std::string_view logged = audit_text(trimmed, command);
  LOG_INFO("C-%llu admin user=%s: %s%s", static_cast<unsigned long long>(client_id_),
           escape_for_log(user_, 64).c_str(), escape_for_log(logged, 200).c_str(),
           logged.size() < trimmed.size() ? " ... (the rest is not logged)" : "");
  if (!command) {
    answer(Answer::fail(protocol::sqlstate::kSyntaxError,
                        "pgmux admin console: unknown command \"" + std::string(trimmed.substr(0, 80)) + "\"",
                        "SHOW HELP lists the commands"));
    return;
  }
  if (std::string_view(command->syntax) == command->words && !input.args.empty()) {
    // A command that takes nothing: trailing words (a second command behind a ';') were ignored silently.
    answer(Answer::fail(protocol::sqlstate::kSyntaxError, "unexpected \"" + input.rest + "\"",
                        std::string("the syntax is ") + command->syntax + "; the console runs one command at a time"));
    return;
  }
  if (const std::optional<Answer> refused = quoting_error(*command, input)) {
    answer(*refused);
    return;
  }
  if (!permitted(*command)) return;
  run(*command, input);
}

// Rights follow the running config: a reload that removes the user from admin_users takes effect at once.
// False (and the client told) when the user may not run the command.
bool AdminConsole::permitted(const admin::Command& command) {
  const conf::Config& config = *worker_.config();
  const auto listed = [&](const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), user_) != names.end();
  };
  const bool may_change = listed(config.admin_users);
  if (!may_change && !listed(config.stats_users)) {
    answer(Answer::fail(protocol::sqlstate::kInsufficientPrivilege,
                        "permission denied: user \"" + user_ + "\" is no longer in admin_users or stats_users",
                        "a config reload removed the rights this console session logged in with"));
    return false;
  }
  if (command.access == admin::Access::Change && !may_change) {
    answer(Answer::fail(protocol::sqlstate::kInsufficientPrivilege,
                        std::string("permission denied: ") + command.words + " needs a user in admin_users",
                        "user \"" + user_ + "\" is in stats_users, which allows SHOW and EXPLAIN ROUTE"));
    return false;
  }
  return true;
}

// Runs the command where it must run: here, after gathering every worker's snapshot, or on the control loop.
void AdminConsole::run(const admin::Command& cmd, const admin::Input& input) {
  const admin::Command* command = &cmd;
  SharedState& shared = worker_.shared();
  admin::Context context{shared, worker_.config(), shared.view.load()};
  context.client_id = client_id_;
  switch (command->runs) {
    case admin::Runs::Here: {
      context.worker = &worker_;
      const bool pause = command->handler == admin::pause_command;
      const std::string paused = input.args.empty() ? PauseState::kAll : admin::unquote_identifier(input.args[0]);
      const bool was_paused = pause && shared.paused.has_entry(paused);
      Answer result = command->handler(input, context);
      if (pause && !result.error) {
        // Answered once no client of the database is inside a transaction any more.
        pause_waiting_for_ = paused;
        pause_added_ = !was_paused;
        ++pause_generation_;
        check_pause_done();
        return;
      }
      answer(result);
      return;
    }
    case admin::Runs::WithSnapshots: {
      Worker* worker = &worker_;
      const uint64_t id = client_id_;
      gather_snapshots(
          shared, [worker](std::function<void()> fn) { worker->post([fn = std::move(fn)](Worker&) { fn(); }); },
          [worker, id, command, input, context](std::vector<WorkerSnapshot> snapshots) mutable {
            context.worker = worker;
            context.snapshots = &snapshots;
            Answer result = command->handler(input, context);
            protocol::ByteVector out;
            admin::encode(result, out);
            deliver_admin_answer(*worker, id, std::move(out));
          });
      return;
    }
    case admin::Runs::OnControl: {
      Worker* worker = &worker_;
      const uint64_t id = client_id_;
      const bool posted = shared.control->post([worker, id, command, input, context](Control& control) mutable {
        context.control = &control;
        context.config = control.config();
        context.reply = [worker, id](const Answer& answer) {
          protocol::ByteVector out;
          admin::encode(answer, out);
          worker->post([id, out = std::move(out)](Worker& w) mutable { deliver_admin_answer(w, id, std::move(out)); });
        };
        Answer result = command->handler(input, context);
        if (!result.later) context.reply(result);
      });
      if (!posted) answer(Answer::fail(protocol::sqlstate::kAdminShutdown, "pgmux is shutting down"));
      return;
    }
  }
}

void AdminConsole::on_tick() {
  if (!pause_waiting_for_.empty()) check_pause_done();
}

// PAUSE answers once no client of the paused database has a transaction open or a reply owed.
void AdminConsole::check_pause_done() {
  if (pause_check_running_) return;
  SharedState& shared = worker_.shared();
  bool still_paused = false;
  for (const std::string& db : shared.paused.list()) {
    still_paused |= db == PauseState::kAll || db == pause_waiting_for_;
  }
  if (!still_paused) {
    pause_waiting_for_.clear();
    answer(Answer::fail(protocol::sqlstate::kQueryCanceled,
                        "PAUSE was canceled by a RESUME before every transaction finished"));
    return;
  }
  pause_check_running_ = true;
  Worker* worker = &worker_;
  const uint64_t id = client_id_;
  const std::string database = pause_waiting_for_;
  const uint64_t generation = pause_generation_;
  gather_snapshots(
      shared, [worker](std::function<void()> fn) { worker->post([fn = std::move(fn)](Worker&) { fn(); }); },
      [worker, id, database, generation](std::vector<WorkerSnapshot> snapshots) {
        ClientConn* client = worker->find_client(id);
        if (!client || !client->is_admin()) return;  // the admin left: nothing to answer
        size_t busy = 0;
        for (const WorkerSnapshot& s : snapshots) {
          for (const ClientRow& c : s.clients) {
            if (!c.admin && c.in_transaction && (database == PauseState::kAll || c.database == database)) ++busy;
          }
        }
        client->admin_console()->on_pause_check(generation, busy);
      });
}

bool AdminConsole::cancel_waiting_pause() {
  if (pause_waiting_for_.empty()) return false;
  const std::string database = pause_waiting_for_;
  pause_waiting_for_.clear();
  ++pause_generation_;  // a check still running answers nothing
  if (pause_added_) worker_.shared().paused.lift(database);
  LOG_INFO("C-%llu admin %s: PAUSE %s cancelled by a cancel request; %s", static_cast<unsigned long long>(client_id_),
           escape_for_log(user_, 64).c_str(), escape_for_log(database, 64).c_str(),
           pause_added_ ? "its pause is lifted" : "it was paused before and stays so");
  answer(Answer::fail(protocol::sqlstate::kQueryCanceled, "canceling statement due to user request",
                      pause_added_ ? "The PAUSE was undone: what it paused is resumed."
                                   : "It was paused before this PAUSE and stays paused."));
  return true;
}

void AdminConsole::on_pause_check(uint64_t generation, size_t busy_clients) {
  pause_check_running_ = false;
  if (generation != pause_generation_) {  // for a PAUSE since cancelled: this one's own check is due
    if (!pause_waiting_for_.empty()) check_pause_done();
    return;
  }
  if (pause_waiting_for_.empty()) return;
  if (busy_clients > 0) return;  // the next tick looks again
  LOG_INFO("C-%llu admin: PAUSE %s done: no transaction running; closing its server connections",
           static_cast<unsigned long long>(client_id_), escape_for_log(pause_waiting_for_, 64).c_str());
  // As PgBouncer's PAUSE: the database's server connections close (idle ones now, the ones session-pooled clients
  // hold when they let them go), so that the database can be restarted, renamed or dropped while paused. They
  // reopen on demand after RESUME.
  const std::string database = pause_waiting_for_ == PauseState::kAll ? std::string() : pause_waiting_for_;
  for (Worker* worker : worker_.shared().workers) {
    worker->post([database](Worker& w) { w.close_paused_pools(database); });
  }
  pause_waiting_for_.clear();
  answer(Answer::done("PAUSE"));
}

}  // namespace pgmux::proxy
