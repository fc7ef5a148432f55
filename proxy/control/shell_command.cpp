#include "proxy/control/shell_command.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/control/probe_connection.hpp"

extern char** environ;

namespace pgmux::proxy {

namespace {
constexpr uint64_t kPollMs = 20;        // how often the child's exit and output are looked at
constexpr size_t kOutputKept = 4096;    // the tail of its output that goes into the log and the answer

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}
}  // namespace

std::string expand_placeholders(const std::string& command, const std::map<char, std::string>& values) {
  std::string out;
  out.reserve(command.size());
  for (size_t i = 0; i < command.size(); ++i) {
    if (command[i] != '%' || i + 1 == command.size()) {
      out += command[i];
      continue;
    }
    const char key = command[i + 1];
    if (key == '%') {
      out += '%';
      ++i;
    } else if (auto found = values.find(key); found != values.end()) {
      out += found->second;
      ++i;
    } else {
      out += '%';
    }
  }
  return out;
}

ShellCommand::ShellCommand(uv_loop_t* loop) : loop_(loop), timer_(make_uv_handle<uv_timer_t>(this)) {
  timer_->init(loop_);
}

ShellCommand::~ShellCommand() {
  kill_and_reap();
  if (output_fd_ >= 0) close(output_fd_);
}

bool ShellCommand::start(const std::string& command, double timeout_seconds, Done done) {
  if (running()) return false;
  done_ = std::move(done);
  output_.clear();
  timeout_ = timeout_seconds;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    finish({false, std::string("could not start: pipe: ") + std::strerror(errno), ""});
    return true;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // A session of its own: a timeout kills everything it started, and a Ctrl-C on pgmux's terminal does not.
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/bin/sh", &actions, &attributes, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    finish({false, std::string("could not start /bin/sh: ") + std::strerror(rc), ""});
    return true;
  }
  pid_ = pid;
  output_fd_ = pipe_fds[0];
  fcntl(output_fd_, F_SETFL, fcntl(output_fd_, F_GETFL) | O_NONBLOCK);
  deadline_ = monotonic_seconds() + timeout_seconds;
  uv_timer_start(timer_->get(), on_tick, kPollMs, kPollMs);
  return true;
}

void ShellCommand::on_tick(uv_timer_t* timer) {
  ShellCommand* self = UvTimer<ShellCommand>::owner_of(timer);
  if (self == nullptr || !self->running()) return;
  self->drain_output();
  int status = 0;
  const pid_t reaped = waitpid(self->pid_, &status, WNOHANG);
  if (reaped == self->pid_) {
    self->pid_ = -1;
    self->drain_output();  // what it wrote just before exiting
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    self->finish({ok, ok ? "" : describe_status(status), self->output_});
    return;
  }
  if (monotonic_seconds() >= self->deadline_) {
    self->kill_and_reap();
    char text[64];
    std::snprintf(text, sizeof text, "timed out after %g s (killed)", self->timeout_);
    self->finish({false, text, self->output_});
  }
}

void ShellCommand::drain_output() {
  if (output_fd_ < 0) return;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(output_fd_, buffer, sizeof buffer);
    if (n <= 0) break;
    output_.append(buffer, static_cast<size_t>(n));
    if (output_.size() > 2 * kOutputKept) output_.erase(0, output_.size() - kOutputKept);
  }
}

void ShellCommand::finish(CommandOutcome outcome) {
  uv_timer_stop(timer_->get());
  if (output_fd_ >= 0) {
    close(output_fd_);
    output_fd_ = -1;
  }
  if (outcome.output.size() > kOutputKept) outcome.output.erase(0, outcome.output.size() - kOutputKept);
  while (!outcome.output.empty() && (outcome.output.back() == '\n' || outcome.output.back() == '\r')) {
    outcome.output.pop_back();
  }
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(outcome);  // last: it may destroy this object
}

void ShellCommand::kill_and_reap() {
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);  // the process group setsid made: the shell and whatever it started
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
}

}  // namespace pgmux::proxy
