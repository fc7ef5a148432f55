// Operator commands (switchover.demote_command and the like): placeholders, exit status, output, timeout.
#include <doctest/doctest.h>

#include <uv.h>

#include <optional>
#include <string>

#include "proxy/control/shell_command.hpp"

using namespace pgmux::proxy;

namespace {
CommandOutcome run(const std::string& command, double timeout) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::optional<CommandOutcome> outcome;
  {
    ShellCommand shell(&loop);
    REQUIRE(shell.start(command, timeout, [&](const CommandOutcome& o) { outcome = o; }));
    CHECK_FALSE(shell.start("true", 1, [](const CommandOutcome&) {}));  // one at a time
    while (!outcome) uv_run(&loop, UV_RUN_ONCE);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the timer's close
  CHECK(uv_loop_close(&loop) == 0);
  return *outcome;
}
}  // namespace

TEST_CASE("shell command: placeholders") {
  const std::map<char, std::string> values{{'n', "b1"}, {'p', "5433"}, {'N', "b2"}};
  CHECK(expand_placeholders("stop %n:%p then %N", values) == "stop b1:5433 then b2");
  CHECK(expand_placeholders("100%% %x %", values) == "100% %x %");
  CHECK(expand_placeholders("", values).empty());
}

TEST_CASE("shell command: exit status and output") {
  CommandOutcome ok = run("echo hello; echo to-stderr >&2", 10);
  CHECK(ok.ok);
  CHECK(ok.failure.empty());
  CHECK(ok.output == "hello\nto-stderr");
  CommandOutcome failed = run("echo nope; exit 3", 10);
  CHECK_FALSE(failed.ok);
  CHECK(failed.failure == "exit status 3");
  CHECK(failed.output == "nope");
  CommandOutcome signaled = run("kill -TERM $$", 10);
  CHECK(signaled.failure == "killed by signal 15");
}

TEST_CASE("shell command: a command past its timeout is killed with what it started") {
  CommandOutcome slow = run("echo started; sleep 30 & sleep 30", 0.3);
  CHECK_FALSE(slow.ok);
  CHECK(slow.failure == "timed out after 0.3 s (killed)");
  CHECK(slow.output == "started");
}
