// A differential script: steps of raw frontend bytes, each followed by a read condition. The runner logs in
// on a fresh connection, plays the steps and records every backend message after AuthenticationOk.
#pragma once
#include <chrono>
#include <string>
#include <vector>
#include "tests/integration/differential/frontend_extras.hpp"
#include "tests/integration/differential/wire_client.hpp"

namespace pgmux::difftest {

enum class Until { ReadyForQuery, MessageCount, Closed };

struct Step {
  std::string label;
  ByteVector send;
  Until until = Until::ReadyForQuery;
  int count = 1;                              // ReadyForQuery messages or plain messages to wait for
  std::chrono::milliseconds timeout{10000};   // for the whole step
  std::chrono::milliseconds quiet{0};         // after `count`, keep listening this long for extra messages
};

struct Script {
  std::string name;
  std::vector<Step> steps;
};

// Fluent construction: frontend calls accumulate into the pending step, an expect_* call closes it.
class ScriptBuilder {
 public:
  explicit ScriptBuilder(std::string name) { script_.name = std::move(name); }

  ScriptBuilder& query(std::string_view sql);
  ScriptBuilder& parse(std::string_view statement, std::string_view sql, const std::vector<int32_t>& types = {});
  ScriptBuilder& bind(const BindParams& params);
  ScriptBuilder& describe(char kind, std::string_view name);
  ScriptBuilder& execute(std::string_view portal, int32_t max_rows = 0);
  ScriptBuilder& close(char kind, std::string_view name);
  ScriptBuilder& sync();
  ScriptBuilder& flush();
  ScriptBuilder& copy_data(std::string_view data);
  ScriptBuilder& copy_done();
  ScriptBuilder& copy_fail(std::string_view reason);
  // Bytes as they are: part of a message, so that its rest comes in a later step.
  ScriptBuilder& raw(const ByteVector& bytes, std::string_view label);

  ScriptBuilder& expect_ready(int n = 1);
  // For Flush and COPY IN, where no ReadyForQuery comes: wait for exactly n messages, then `quiet` more.
  ScriptBuilder& expect_messages(int n, std::chrono::milliseconds quiet = std::chrono::milliseconds(300));
  // Shorthand: one simple Query and its ReadyForQuery.
  ScriptBuilder& q(std::string_view sql) { return query(sql).expect_ready(1); }

  Script build();

 private:
  void note(std::string_view what);
  void close_step(Until until, int count, std::chrono::milliseconds quiet);
  Script script_;
  Step pending_;
};

struct Target {
  std::string host = "127.0.0.1";
  int port = 0;
  LoginParams login;
};

struct Capture {
  std::vector<BackendMessage> messages;
  std::vector<std::string> step_of;  // step label for each message ("login" for the startup reply)
  std::string error;                 // empty when every step completed
};

// Plays the script on a fresh connection, then sends Terminate and waits for the close.
Capture run_script(const Target& target, const Script& script);

// One simple-query batch on its own connection (setup, reset, teardown). Returns "" or an error text.
std::string run_admin_sql(const Target& target, std::string_view sql);

}  // namespace pgmux::difftest
