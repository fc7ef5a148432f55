// PAUSE, RESUME, RECONNECT, RELOAD, SET, ENABLE/DISABLE BACKEND, SET BACKEND WEIGHT, KILL_CLIENT, SWITCHOVER, SHUTDOWN.
#include <uv.h>

#include <algorithm>

#include "protocol/sqlstate.hpp"
#include "proxy/ops/admin/commands.hpp"
#include "proxy/ops/admin/live_settings.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/control/control.hpp"
#include "proxy/control/shared_state.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy::admin {

namespace {

// SHUTDOWN stops a moment later, so its answer reaches the console before the console's connection closes. The
// object owns itself: it goes once its timer has closed.
struct DelayedStop {
  DelayedStop(Control* c, bool g) : control(c), graceful(g) {}
  static void on_timer(uv_timer_t* handle) {
    DelayedStop* self = UvTimer<DelayedStop>::owner_of(handle);
    self->control->stop(self->graceful, "SHUTDOWN from the admin console");
    self->timer.close();
  }
  void on_closed() { delete this; }

  Control* control;
  bool graceful;
  UvTimer<DelayedStop> timer{this, &DelayedStop::on_closed};
};

Answer too_many_arguments(const Input& input, const char* syntax) {
  return Answer::fail(protocol::sqlstate::kSyntaxError, "unexpected \"" + input.args.back() + "\"",
                      std::string("the syntax is ") + syntax);
}

// A reload's or SET's result: a notice with what changed, or every error.
Answer config_outcome(const ReloadOutcome& outcome, const char* tag) {
  if (!outcome.ok) {
    std::string message = outcome.summary;
    for (const std::string& e : outcome.errors) message += "\n  " + e;
    return Answer::fail(protocol::sqlstate::kConfigFileError,
                        message, "The running config is unchanged; fix the problem and try again.");
  }
  Answer a = Answer::done(tag);
  a.notices.push_back(outcome.summary);
  return a;
}

// A database PAUSE or RECONNECT may name: one of the config's, or one open now through "*" (a name "*" would
// match whatever it is: PAUSE APP answered PAUSE and paused nothing, app being the configured name).
bool known_database(const std::string& name, const Context& context) {
  for (const conf::Database& d : context.config->databases) {
    if (d.name == name && d.name != "*") return true;
  }
  const std::vector<std::string> open = context.shared.open_auto_databases();
  return std::find(open.begin(), open.end(), name) != open.end();
}

}  // namespace

Answer pause_command(const Input& input, Context& context) {
  if (input.args.size() > 1) return too_many_arguments(input, "PAUSE [database]");
  const std::string database = input.args.empty() ? PauseState::kAll : unquote_identifier(input.args[0]);
  if (database != PauseState::kAll && !known_database(database, context)) {
    return Answer::fail(protocol::sqlstate::kInvalidCatalogName,
                        "database \"" + database + "\" is not configured, nor open through \"*\"",
                        "SHOW DATABASES lists them (names are case-sensitive); PAUSE without a name pauses all");
  }
  context.shared.paused.pause(database);
  return Answer::done("PAUSE");  // the console answers once running transactions have finished
}

Answer resume_command(const Input& input, Context& context) {
  if (input.args.size() > 1) return too_many_arguments(input, "RESUME [database]");
  const std::string database = input.args.empty() ? PauseState::kAll : unquote_identifier(input.args[0]);
  if (!context.shared.paused.resume(database)) {
    const auto paused = context.shared.paused.list();
    std::string hint = paused.empty() ? "nothing is paused" : "paused now: ";
    for (size_t i = 0; i < paused.size(); ++i) hint += (i ? ", " : "") + paused[i];
    if (!paused.empty() && paused[0] == PauseState::kAll) hint += " (PAUSE without a name: RESUME without one)";
    // RESUME without a name (or "*") resumes whatever is paused (PgBouncer: "pooler is not paused/suspended").
    const std::string what =
        database == PauseState::kAll ? "pgmux is not paused" : "database \"" + database + "\" is not paused";
    return Answer::fail(protocol::sqlstate::kObjectNotInPrerequisiteState, what, hint);
  }
  // Held clients are released by their worker's next tick (within 250 ms).
  return Answer::done("RESUME");
}

// Each worker replaces its pools' servers: sessions of ALTER ROLE / DATABASE ... SET defaults read at login.
Answer reconnect_command(const Input& input, Context& context) {
  if (input.args.size() > 1) return too_many_arguments(input, "RECONNECT [database]");
  // "*", quoted or not (PAUSE's name for every database), means every pool here too.
  const std::string named = input.args.empty() ? PauseState::kAll : unquote_identifier(input.args[0]);
  const std::string database = named == PauseState::kAll ? "" : named;
  if (!database.empty() && !known_database(database, context)) {
    return Answer::fail(protocol::sqlstate::kInvalidCatalogName,
                        "database \"" + database + "\" is not configured, nor open through \"*\"",
                        "SHOW DATABASES lists them (names are case-sensitive); RECONNECT without a name replaces "
                        "every pool's servers");
  }
  for (Worker* worker : context.shared.workers) {
    worker->post([database](Worker& w) { w.reconnect_pools(database); });
  }
  return Answer::done("RECONNECT");
}

Answer reload_command(const Input& input, Context& context) {
  if (!input.args.empty()) return too_many_arguments(input, "RELOAD");
  return config_outcome(context.control->reload("RELOAD"), "RELOAD");
}

Answer set_command(const Input& input, Context& context) {
  // SET key = value | SET key TO value; the value may be quoted.
  std::string text = input.rest;
  size_t split = text.find('=');
  size_t skip = 1;
  if (split == std::string::npos) {
    for (size_t i = 0; i + 4 <= text.size(); ++i) {
      if ((text[i] == ' ' || text[i] == '\t') && (text[i + 1] == 'T' || text[i + 1] == 't') &&
          (text[i + 2] == 'O' || text[i + 2] == 'o') && (text[i + 3] == ' ' || text[i + 3] == '\t')) {
        split = i + 1;
        skip = 2;
        break;
      }
    }
  }
  auto trim = [](std::string s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(s.begin());
    if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front())
      s = s.substr(1, s.size() - 2);
    return s;
  };
  if (split == std::string::npos) {
    return Answer::fail(protocol::sqlstate::kSyntaxError, "SET needs a key and a value",
                        "SET key = value; SHOW CONFIG lists the keys");
  }
  const std::string key = trim(text.substr(0, split));
  const std::string value = trim(text.substr(split + skip));
  const LiveSetting* setting = find_live_setting(key);
  if (!setting) {
    return Answer::fail(protocol::sqlstate::kUndefinedObject, "unknown setting \"" + key + "\"",
                        "SHOW CONFIG lists the settings; those with changeable = yes can be SET");
  }
  if (setting->changeable != Changeable::Set) {
    return Answer::fail(protocol::sqlstate::kCantChangeRuntimeParam,
                        "setting \"" + setting->key + "\" cannot be changed with SET",
                        setting->changeable == Changeable::Reload ? "change it in the config file and RELOAD"
                                                                  : "it changes only with a restart of pgmux");
  }
  auto next = std::make_shared<conf::Config>(*context.config);
  const std::string problem = setting->set(*next, value);
  if (!problem.empty()) {
    return Answer::fail(protocol::sqlstate::kInvalidParameterValue,
                        "invalid value \"" + value + "\" for " + setting->key + ": " + problem);
  }
  return config_outcome(context.control->apply_config(next, "SET " + setting->key), "SET");
}

Answer set_backend_weight(const Input& input, Context& context) {
  // SET BACKEND n WEIGHT w
  int index = -1;
  Answer error;
  if (!parse_backend_index(input, 0, *context.config, &index, &error)) return error;
  if (input.args.size() != 3 || input.args[1].size() != 6 ||
      strncasecmp(input.args[1].c_str(), "WEIGHT", 6) != 0) {
    return Answer::fail(protocol::sqlstate::kSyntaxError, "expected SET BACKEND <n> WEIGHT <w>",
                        "for example: SET BACKEND 1 WEIGHT 3");
  }
  const std::string& text = input.args[2];
  bool digits = !text.empty() && text.size() < 10;
  for (char c : text) digits = digits && c >= '0' && c <= '9';
  if (!digits) {
    return Answer::fail(protocol::sqlstate::kInvalidParameterValue,
                        "invalid weight \"" + text + "\"", "a weight is an integer >= 0 (0: no reads)");
  }
  auto next = std::make_shared<conf::Config>(*context.config);
  next->backends[static_cast<size_t>(index)].weight = std::stoi(text);
  return config_outcome(context.control->apply_config(next, "SET BACKEND " + std::to_string(index) + " WEIGHT"),
                        "SET");
}

namespace {
Answer set_enabled(const Input& input, Context& context, bool enabled) {
  int index = -1;
  Answer error;
  if (!parse_backend_index(input, 0, *context.config, &index, &error)) return error;
  if (input.args.size() > 1) return too_many_arguments(input, enabled ? "ENABLE BACKEND <n>" : "DISABLE BACKEND <n>");
  std::string problem;
  if (!context.control->set_backend_enabled(index, enabled, &problem)) {
    return Answer::fail(protocol::sqlstate::kObjectNotInPrerequisiteState, problem, "SHOW BACKENDS shows the roles");
  }
  return Answer::done(enabled ? "ENABLE" : "DISABLE");
}
}  // namespace

Answer enable_backend(const Input& input, Context& context) { return set_enabled(input, context, true); }
Answer disable_backend(const Input& input, Context& context) { return set_enabled(input, context, false); }

Answer kill_client(const Input& input, Context& context) {
  if (input.args.size() != 1) {
    return Answer::fail(protocol::sqlstate::kSyntaxError, "expected KILL_CLIENT <id>",
                        "the id is the first column of SHOW CLIENTS, e.g. KILL_CLIENT C-12");
  }
  std::string text = input.args[0];
  if (text.size() > 2 && (text[0] == 'C' || text[0] == 'c') && text[1] == '-') text = text.substr(2);
  bool digits = !text.empty() && text.size() < 20;
  for (char c : text) digits = digits && c >= '0' && c <= '9';
  const uint64_t id = digits ? std::stoull(text) : 0;
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) {
      if (c.id != id) continue;
      if (id == context.client_id) {
        return Answer::fail(protocol::sqlstate::kObjectNotInPrerequisiteState,
                            "KILL_CLIENT of the console's own session", "disconnect instead");
      }
      context.shared.workers[static_cast<size_t>(c.worker)]->post([id](Worker& w) {
        if (ClientConn* client = w.find_client(id)) {
          client->fail(Failure::KilledByAdmin);
        }
      });
      return Answer::done("KILL_CLIENT");
    }
  }
  return Answer::fail(protocol::sqlstate::kUndefinedObject,
                      "there is no client \"" + input.args[0] + "\"", "SHOW CLIENTS lists the clients");
}

Answer shutdown_command(const Input& input, Context& context) {
  bool graceful = false;
  if (input.args.size() == 1 && strcasecmp(input.args[0].c_str(), "WAIT_FOR_CLIENTS") == 0) {
    graceful = true;
  } else if (!input.args.empty()) {
    return Answer::fail(protocol::sqlstate::kSyntaxError, "unexpected \"" + input.args[0] + "\"",
                        "SHUTDOWN stops now; SHUTDOWN WAIT_FOR_CLIENTS lets sessions finish first");
  }
  auto* stop = new DelayedStop(context.control, graceful);
  stop->timer.init(context.control->loop());
  uv_timer_start(stop->timer.get(), DelayedStop::on_timer, 100, 0);
  return Answer::done("SHUTDOWN");
}

// SWITCHOVER [TO backend]: answered when the switchover is done, canceled or failed (proxy/control/switchover.hpp).
Answer switchover_command(const Input& input, Context& context) {
  std::string target;
  if (input.args.size() == 2 && (input.args[0] == "TO" || input.args[0] == "to" || input.args[0] == "To")) {
    target = input.args[1];
    if (target.size() >= 2 && target.front() == '"' && target.back() == '"')
      target = target.substr(1, target.size() - 2);
  } else if (!input.args.empty()) {
    return Answer::fail(protocol::sqlstate::kSyntaxError, "unexpected \"" + input.rest + "\"",
                        "the syntax is SWITCHOVER [TO <backend>]; SHOW BACKENDS lists the backends");
  }
  context.control->switchover().start(target, [reply = context.reply](const SwitchoverResult& result) {
    if (!result.sqlstate.empty()) {
      Answer failed = Answer::fail(result.sqlstate, result.message, result.hint);
      failed.notices = result.notices;
      reply(failed);
      return;
    }
    Answer done = Answer::done("SWITCHOVER");
    done.notices = result.notices;
    done.notices.push_back(result.message);
    reply(done);
  });
  return Answer::deferred();
}

}  // namespace pgmux::proxy::admin
