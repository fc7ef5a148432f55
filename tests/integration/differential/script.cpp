#include "tests/integration/differential/script.hpp"

#include "protocol/backend_messages.hpp"
#include "protocol/frontend_messages.hpp"
#include "tests/integration/differential/message_diff.hpp"

namespace pgmux::difftest {

namespace {
constexpr std::chrono::milliseconds kLoginTimeout{10000};
}

void ScriptBuilder::note(std::string_view what) {
  if (!pending_.label.empty()) pending_.label += " ";
  pending_.label += what;
}

ScriptBuilder& ScriptBuilder::query(std::string_view sql) {
  protocol::build_query(pending_.send, sql);
  note("Q[" + std::string(sql.substr(0, 40)) + (sql.size() > 40 ? "...]" : "]"));
  return *this;
}
ScriptBuilder& ScriptBuilder::parse(std::string_view statement, std::string_view sql,
                                    const std::vector<int32_t>& types) {
  protocol::build_parse(pending_.send, statement, sql, types);
  note("P(" + std::string(statement) + ")");
  return *this;
}
ScriptBuilder& ScriptBuilder::bind(const BindParams& params) {
  build_bind(pending_.send, params);
  note("B(" + params.portal + "<-" + params.statement + ")");
  return *this;
}
ScriptBuilder& ScriptBuilder::describe(char kind, std::string_view name) {
  protocol::build_describe(pending_.send, kind, name);
  note(std::string("D") + kind + "(" + std::string(name) + ")");
  return *this;
}
ScriptBuilder& ScriptBuilder::execute(std::string_view portal, int32_t max_rows) {
  build_execute(pending_.send, portal, max_rows);
  note("E(" + std::string(portal) + "," + std::to_string(max_rows) + ")");
  return *this;
}
ScriptBuilder& ScriptBuilder::close(char kind, std::string_view name) {
  protocol::build_close(pending_.send, kind, name);
  note(std::string("C") + kind + "(" + std::string(name) + ")");
  return *this;
}
ScriptBuilder& ScriptBuilder::sync() {
  protocol::build_sync(pending_.send);
  note("S");
  return *this;
}
ScriptBuilder& ScriptBuilder::flush() {
  build_flush(pending_.send);
  note("H");
  return *this;
}
ScriptBuilder& ScriptBuilder::copy_data(std::string_view data) {
  build_copy_data(pending_.send, data);
  note("d");
  return *this;
}
ScriptBuilder& ScriptBuilder::raw(const ByteVector& bytes, std::string_view label) {
  pending_.send.insert(pending_.send.end(), bytes.begin(), bytes.end());
  note(label);
  return *this;
}
ScriptBuilder& ScriptBuilder::copy_done() {
  build_copy_done(pending_.send);
  note("c");
  return *this;
}
ScriptBuilder& ScriptBuilder::copy_fail(std::string_view reason) {
  build_copy_fail(pending_.send, reason);
  note("f");
  return *this;
}

void ScriptBuilder::close_step(Until until, int count, std::chrono::milliseconds quiet) {
  pending_.until = until;
  pending_.count = count;
  pending_.quiet = quiet;
  pending_.label = "#" + std::to_string(script_.steps.size() + 1) + " " + pending_.label;
  script_.steps.push_back(std::move(pending_));
  pending_ = Step{};
}

ScriptBuilder& ScriptBuilder::expect_ready(int n) {
  close_step(Until::ReadyForQuery, n, std::chrono::milliseconds(0));
  return *this;
}
ScriptBuilder& ScriptBuilder::expect_messages(int n, std::chrono::milliseconds quiet) {
  close_step(Until::MessageCount, n, quiet);
  return *this;
}

Script ScriptBuilder::build() {
  // Every script ends the way a polite client does: Terminate, then the peer closes.
  protocol::build_terminate(pending_.send);
  note("X");
  close_step(Until::Closed, 0, std::chrono::milliseconds(0));
  return std::move(script_);
}

namespace {

// Reads for one step; appends to capture. Returns false (with capture.error set) when the step's condition
// is not met in time.
bool read_step(WireClient& client, const Step& step, Capture& capture) {
  const Clock::time_point deadline = Clock::now() + step.timeout;
  int seen = 0;
  auto record = [&](BackendMessage&& m) {
    capture.messages.push_back(std::move(m));
    capture.step_of.push_back(step.label);
  };
  for (;;) {
    if (step.until != Until::Closed && seen >= step.count) break;
    BackendMessage m;
    ReadStatus st = client.read_message(m, deadline);
    if (st == ReadStatus::Message) {
      bool counts = step.until == Until::MessageCount || (step.until == Until::ReadyForQuery &&
                                                          m.tag == protocol::backend::kReadyForQuery);
      record(std::move(m));
      if (counts) ++seen;
      continue;
    }
    if (step.until == Until::Closed && st == ReadStatus::Closed) return true;
    capture.error = "step " + step.label + ": " +
                    (st == ReadStatus::Timeout ? "timed out" : st == ReadStatus::Closed ? "connection closed"
                                                                                       : client.error()) +
                    " after " + std::to_string(seen) + " of " + std::to_string(step.count) + " expected";
    return false;
  }
  if (step.quiet.count() > 0) {
    const Clock::time_point quiet_until = Clock::now() + step.quiet;
    BackendMessage m;
    while (client.read_message(m, quiet_until) == ReadStatus::Message) record(std::move(m));
  }
  return true;
}

}  // namespace

Capture run_script(const Target& target, const Script& script) {
  Capture capture;
  WireClient client;
  if (!client.connect(target.host, target.port, kLoginTimeout)) {
    capture.error = "connect: " + client.error();
    return capture;
  }
  std::vector<BackendMessage> startup;
  bool ok = client.login(target.login, startup, kLoginTimeout);
  for (auto& m : startup) {
    capture.messages.push_back(std::move(m));
    capture.step_of.push_back("login");
  }
  if (!ok) {
    capture.error = "login: " + printable(protocol::as_bytes(client.error()));
    return capture;
  }
  for (const Step& step : script.steps) {
    if (!client.send(step.send)) {
      capture.error = "step " + step.label + ": " + client.error();
      return capture;
    }
    if (!read_step(client, step, capture)) return capture;
  }
  return capture;
}

std::string run_admin_sql(const Target& target, std::string_view sql) {
  Script script = ScriptBuilder("admin").q(sql).build();
  Capture c = run_script(target, script);
  if (!c.error.empty()) return c.error;
  for (const auto& m : c.messages) {
    if (m.tag == protocol::backend::kErrorResponse) return "admin SQL failed: " + printable(m.body);
  }
  return {};
}

}  // namespace pgmux::difftest
