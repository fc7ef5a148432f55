// End-to-end test harness: the real-cluster ports, pgmux's test configuration, and a pgmux child process
// owned by a test (started on construction, stopped by pid on destruction).
#pragma once
#include <netinet/in.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace pgmux::test {

struct ClusterPorts {
  int primary;
  int standby1;
  int standby2;
};

// From env PGMUX_TEST_BASEPORT (default 25433): primary, then the two standbys.
ClusterPorts cluster_ports();

// Directory of the test cluster (env PGMUX_TEST_CLUSTER_DIR), empty when unset.
std::string cluster_dir();

// True when env PGMUX_TEST_DIRECT=1: tests talk to the primary directly instead of through pgmux.
bool direct_mode();

// True when env PGMUX_SANITIZER_REPORTS is set (scripts/test-sanitizers.sh): pgmux runs under ASan or TSan, whose
// shadow memory, redzones and quarantine make its memory figures meaningless. Memory budgets are checked by the
// plain build's run (scripts/test.sh runs those tests there).
bool sanitized_pgmux();

// The standard test configuration (see tests/integration/README.md), as JSON to tweak and as text.
nlohmann::json default_config(int listen_port);
std::string default_config_json(int listen_port);

// libpq connection string to 127.0.0.1 with bounded connect time.
std::string conninfo(int port, const std::string& user, const std::string& password, const std::string& db);

// 127.0.0.1:port as a socket address.
sockaddr_in loopback_address(int port);

// First port >= start that can be bound on 127.0.0.1 (throws when none below 65536).
int free_port_from(int start);
// A free port in a per-process region, so tests running in parallel rarely race for one.
int pick_listen_port();

// Runs a shell command (`sh -c`, stderr with stdout): its exit status (128 when it did not exit), its output
// appended to *out. Bound its time in the command itself (`timeout N ...`).
int run_shell(const std::string& command, std::string* out);

class PgmuxProcess {
 public:
  // Writes the config to a temp file, spawns the pgmux binary (env PGMUX_BINARY, else the build's), logs to a
  // temp file, and waits up to 10 s until listen_port accepts. Throws std::runtime_error (with the log).
  PgmuxProcess(const std::string& config_json, int listen_port);
  // SIGINT, up to 5 s, then SIGKILL; removes the temp files. In a sanitizer run (env PGMUX_SANITIZER_REPORTS)
  // an unclean stop is recorded as a report and pgmux's reports are printed.
  ~PgmuxProcess();
  PgmuxProcess(const PgmuxProcess&) = delete;
  PgmuxProcess& operator=(const PgmuxProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const;       // the last 20 000 characters, for failure messages
  std::string full_log() const;  // all of it, for counting and searching lines
  // The config file pgmux was started with: rewrite it, then SIGHUP or the console's RELOAD.
  const std::string& config_path() const { return config_path_; }
  // Replaces the config file pgmux was started with (atomically: a reload never reads half of it).
  void write_config(const std::string& config_json);
  void send_signal(int sig);
  // Waits until the process exits; false on timeout. *status gets the waitpid status.
  bool wait_exit(double seconds, int* status = nullptr);
  // Peak resident set size in kB (VmHWM), or -1 when the process is gone.
  long peak_rss_kb() const;

 private:
  void stop_and_cleanup();
  void report_unclean_exit(bool exited_in_time) const;
  void print_sanitizer_reports() const;

  int port_;
  pid_t pid_ = -1;
  bool exited_ = false;
  bool interrupted_ = false;  // SIGINT sent: never twice (see stop_and_cleanup)
  int exit_status_ = 0;
  std::string config_path_;
  std::string log_path_;
};

// What a test connects to: a pgmux started with the given config, or the primary when direct_mode(), or an
// already running proxy at env PGMUX_TEST_EXTERNAL_PORT (its config is then the caller's business).
class ProxyUnderTest {
 public:
  ProxyUnderTest();  // default_config_json on a picked port
  // config_json built for listen_port (see pick_listen_port()).
  ProxyUnderTest(const std::string& config_json, int listen_port);

  int port() const { return port_; }
  bool direct() const { return !process_; }
  PgmuxProcess* process() { return process_.get(); }
  std::string conninfo(const std::string& user, const std::string& password, const std::string& db) const;
  // conninfo for the standard application login (app/app on database app).
  std::string app_conninfo() const { return conninfo("app", "app", "app"); }

 private:
  int port_;
  std::unique_ptr<PgmuxProcess> process_;
};

}  // namespace pgmux::test
