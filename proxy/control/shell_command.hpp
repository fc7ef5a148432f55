// An operator's shell command (switchover.demote_command and the like) run from the control loop without blocking
// it: /bin/sh -c in a session of its own, its stdout and stderr collected (the last 4 KiB), its exit checked on a
// timer, and the whole process group killed when it runs past its timeout or this object goes.
#pragma once
#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

#include <uv.h>

#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy {

struct CommandOutcome {
  bool ok = false;      // exited with status 0
  std::string failure;  // "exit status 3", "killed by signal 9", "timed out after 60 s", "could not start: ..."
  std::string output;   // its stdout and stderr, interleaved, the last 4 KiB
};

// `command` with %x placeholders replaced from `values` (x -> text); %% is a percent sign, and an unknown
// placeholder is left as written. Values go in as they are: the operator's config chose them.
std::string expand_placeholders(const std::string& command, const std::map<char, std::string>& values);

class ShellCommand {
 public:
  using Done = std::function<void(const CommandOutcome&)>;

  explicit ShellCommand(uv_loop_t* loop);
  ~ShellCommand();  // a command still running is killed (its process group) and reaped
  ShellCommand(const ShellCommand&) = delete;
  ShellCommand& operator=(const ShellCommand&) = delete;

  // Starts `command`; `done` runs once, on the loop, and may destroy this object. False (and no callback) when
  // one is still running.
  bool start(const std::string& command, double timeout_seconds, Done done);
  bool running() const { return pid_ > 0; }

 private:
  static void on_tick(uv_timer_t* timer);
  void drain_output();
  void finish(CommandOutcome outcome);
  void kill_and_reap();

  uv_loop_t* loop_;
  UvHandlePtr<uv_timer_t, ShellCommand> timer_;
  pid_t pid_ = -1;
  int output_fd_ = -1;  // non-blocking read end of the child's stdout/stderr pipe
  double deadline_ = 0;
  double timeout_ = 0;
  std::string output_;
  Done done_;
};

}  // namespace pgmux::proxy
