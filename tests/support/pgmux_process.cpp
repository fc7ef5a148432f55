#include "tests/support/pgmux_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#ifndef PGMUX_BINARY_PATH
#define PGMUX_BINARY_PATH "pgmux"
#endif

namespace pgmux::test {
namespace {

using Clock = std::chrono::steady_clock;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::atoi(v);
}

// Creates an empty temp file named /tmp/pgmux-test-XXXXXX<suffix>; returns its path.
std::string make_temp_file(const std::string& suffix) {
  std::string tmpl = "/tmp/pgmux-test-XXXXXX" + suffix;
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = mkstemps(buf.data(), static_cast<int>(suffix.size()));
  if (fd < 0) throw std::runtime_error("mkstemps failed for " + tmpl);
  close(fd);
  return std::string(buf.data());
}

bool port_accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr = loopback_address(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

bool port_bindable(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr = loopback_address(port);
  // No SO_REUSEADDR/SO_REUSEPORT: a port held by anyone (even a SO_REUSEPORT pgmux) must count as taken.
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

sockaddr_in loopback_address(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

ClusterPorts cluster_ports() {
  int base = env_int("PGMUX_TEST_BASEPORT", 25433);
  return ClusterPorts{base, base + 1, base + 2};
}

std::string cluster_dir() {
  const char* v = std::getenv("PGMUX_TEST_CLUSTER_DIR");
  return v ? v : "";
}

bool direct_mode() {
  const char* v = std::getenv("PGMUX_TEST_DIRECT");
  return v && std::string(v) == "1";
}

bool sanitized_pgmux() {
  const char* v = std::getenv("PGMUX_SANITIZER_REPORTS");
  return v && *v;
}

nlohmann::json default_config(int listen_port) {
  using nlohmann::json;
  ClusterPorts ports = cluster_ports();
  return json{
      {"listeners", json::array({{{"host", "127.0.0.1"}, {"port", listen_port}}})},
      {"workers", 2},
      {"backends", json::array({{{"name", "primary"}, {"host", "127.0.0.1"}, {"port", ports.primary}}})},
      {"auth_method", "scram-sha-256"},
      {"users", json::array({{{"name", "app"}, {"password", "app"}},
                             {{"name", "postgres"}, {"password", "postgres"}},
                             {{"name", "md5user"}, {"password", "md5user"}, {"auth_method", "md5"}}})},
      {"databases", json::array({{{"name", "app"}, {"pool_size", 20}}, {{"name", "*"}, {"pool_size", 10}}})},
      {"timeouts", {{"query_wait_timeout", 120},
                    {"server_idle_timeout", 600},
                    {"server_connect_timeout", 5},
                    {"client_login_timeout", 60},
                    {"shutdown_timeout", 30}}},
      {"logging", {{"level", "info"}, {"file", ""}}},
      // Tests run pgmux processes side by side: the metrics listener is off unless a test picks a port for it.
      {"metrics_listen", ""},
  };
}

std::string default_config_json(int listen_port) { return default_config(listen_port).dump(2); }

std::string conninfo(int port, const std::string& user, const std::string& password, const std::string& db) {
  std::ostringstream s;
  s << "host=127.0.0.1 port=" << port << " user=" << user << " password=" << password << " dbname=" << db
    << " connect_timeout=5";
  return s.str();
}

int run_shell(const std::string& command, std::string* out) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int free_port_from(int start) {
  for (int port = start; port < 65536; ++port) {
    if (port_bindable(port)) return port;
  }
  throw std::runtime_error("no free port at or above " + std::to_string(start));
}

int pick_listen_port() {
  // Spread parallel test processes over 21000..31999 by pid: below the kernel's ephemeral range (32768+).
  int start = 21000 + static_cast<int>(getpid() % 1100) * 10;
  int port = free_port_from(start);
  ClusterPorts cluster = cluster_ports();
  // Never the cluster's ports, even while a node is down (the primary-restart test).
  if (port >= cluster.primary && port <= cluster.standby2) port = free_port_from(cluster.standby2 + 1);
  return port;
}

PgmuxProcess::PgmuxProcess(const std::string& config_json, int listen_port) : port_(listen_port) {
  const char* env_bin = std::getenv("PGMUX_BINARY");
  std::string binary = (env_bin && *env_bin) ? env_bin : PGMUX_BINARY_PATH;
  if (access(binary.c_str(), X_OK) != 0) {
    throw std::runtime_error("pgmux binary not executable: " + binary + " (build target pgmux or set PGMUX_BINARY)");
  }
  config_path_ = make_temp_file(".json");
  log_path_ = make_temp_file(".log");
  {
    std::ofstream out(config_path_);
    out << config_json;
    if (!out) throw std::runtime_error("cannot write " + config_path_);
  }

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_APPEND);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execl(binary.c_str(), binary.c_str(), "-c", config_path_.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }

  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (true) {
    if (wait_exit(0)) {
      std::string msg = "pgmux exited during startup (status " + std::to_string(exit_status_) + "); log:\n" + log();
      unlink(config_path_.c_str());
      unlink(log_path_.c_str());
      throw std::runtime_error(msg);
    }
    if (port_accepts(port_)) return;
    if (Clock::now() > deadline) {
      std::string msg = "pgmux did not accept on port " + std::to_string(port_) + " within 10 s; log:\n" + log();
      stop_and_cleanup();
      throw std::runtime_error(msg);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

PgmuxProcess::~PgmuxProcess() { stop_and_cleanup(); }

void PgmuxProcess::stop_and_cleanup() {
  if (pid_ > 0 && !exited_) {
    // SIGINT closes everything at once, so pgmux reaches its exit (and LeakSanitizer's check there) whatever
    // clients the test left connected. Sent once only: pgmux closes its signal handlers on the way out, and a
    // second SIGINT arriving then would kill it by the default action (an "unclean exit" in a sanitizer run).
    if (!interrupted_) kill(pid_, SIGINT);
    const bool exited = wait_exit(5.0);
    if (!exited) {
      kill(pid_, SIGKILL);
      wait_exit(5.0);
    }
    report_unclean_exit(exited);
  }
  print_sanitizer_reports();
  if (!config_path_.empty()) unlink(config_path_.c_str());
  if (!log_path_.empty() && std::getenv("PGMUX_TEST_KEEP_LOGS") == nullptr) unlink(log_path_.c_str());
  config_path_.clear();
  log_path_.clear();
}

namespace {
// env PGMUX_SANITIZER_REPORTS: the directory where the sanitized pgmux writes its reports (log_path), set by
// scripts/test-sanitizers.sh; empty otherwise.
std::string sanitizer_reports_dir() {
  const char* dir = std::getenv("PGMUX_SANITIZER_REPORTS");
  return dir ? dir : "";
}
}  // namespace

// In a sanitizer run an unclean stop is a finding: a pgmux that needs SIGKILL never runs LeakSanitizer, and one
// that exits non-zero on SIGINT stopped on something. Written where the sanitizers' reports go, so the run fails.
void PgmuxProcess::report_unclean_exit(bool exited_in_time) const {
  const std::string dir = sanitizer_reports_dir();
  if (dir.empty()) return;
  std::string why;
  if (!exited_in_time) why = "did not exit within 5 s of SIGINT (killed)";
  else if (WIFSIGNALED(exit_status_)) {
    why = "was killed by signal " + std::to_string(WTERMSIG(exit_status_)) + " after SIGINT";
  } else if (WEXITSTATUS(exit_status_) != 0) {
    why = "exited with code " + std::to_string(WEXITSTATUS(exit_status_)) + " on SIGINT";
  }
  if (why.empty()) return;
  std::ofstream out(dir + "/unclean-exit." + std::to_string(pid_));
  out << "pgmux pid " << pid_ << " " << why << "; its log:\n" << log() << "\n";
}

// The sanitizer reports this pgmux wrote (log_path files end in .<pid>), on stderr next to the test's output.
void PgmuxProcess::print_sanitizer_reports() const {
  const std::string dir = sanitizer_reports_dir();
  if (dir.empty() || pid_ <= 0) return;
  for (const char* prefix : {"/report.", "/unclean-exit."}) {
    std::ifstream in(dir + prefix + std::to_string(pid_));
    if (!in) continue;
    std::stringstream text;
    text << in.rdbuf();
    std::fprintf(stderr, "==== pgmux pid %d: %s%s ====\n%s\n", int(pid_), dir.c_str(), prefix, text.str().c_str());
  }
}

void PgmuxProcess::write_config(const std::string& config_json) {
  const std::string next = config_path_ + ".next";
  {
    std::ofstream out(next);
    out << config_json;
    if (!out) throw std::runtime_error("cannot write " + next);
  }
  if (std::rename(next.c_str(), config_path_.c_str()) != 0) throw std::runtime_error("cannot replace " + config_path_);
}

std::string PgmuxProcess::full_log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string PgmuxProcess::log() const {
  std::string text = full_log();
  constexpr size_t kMax = 20000;  // keep failure messages readable
  if (text.size() > kMax) text = "...\n" + text.substr(text.size() - kMax);
  return text;
}

void PgmuxProcess::send_signal(int sig) {
  if (pid_ <= 0 || exited_ || (sig == SIGINT && interrupted_)) return;
  kill(pid_, sig);
  if (sig == SIGINT) interrupted_ = true;
}

bool PgmuxProcess::wait_exit(double seconds, int* status) {
  if (pid_ <= 0) return true;
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (!exited_) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exit_status_ = st;
      break;
    }
    if (r < 0) {  // not our child any more (should not happen); treat as gone
      exited_ = true;
      break;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (status) *status = exit_status_;
  return true;
}

long PgmuxProcess::peak_rss_kb() const {
  if (pid_ <= 0 || exited_) return -1;
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

namespace {
// env PGMUX_TEST_EXTERNAL_PORT: a proxy someone else runs (e.g. PgBouncer, to compare); 0 when unset.
int external_port() { return env_int("PGMUX_TEST_EXTERNAL_PORT", 0); }
}  // namespace

ProxyUnderTest::ProxyUnderTest() : port_(0) {
  if (direct_mode() || external_port()) {
    port_ = direct_mode() ? cluster_ports().primary : external_port();
    return;
  }
  port_ = pick_listen_port();
  process_ = std::make_unique<PgmuxProcess>(default_config_json(port_), port_);
}

ProxyUnderTest::ProxyUnderTest(const std::string& config_json, int listen_port) : port_(listen_port) {
  if (direct_mode() || external_port()) {
    port_ = direct_mode() ? cluster_ports().primary : external_port();
    return;
  }
  process_ = std::make_unique<PgmuxProcess>(config_json, listen_port);
}

std::string ProxyUnderTest::conninfo(const std::string& user, const std::string& password,
                                     const std::string& db) const {
  return pgmux::test::conninfo(port_, user, password, db);
}

}  // namespace pgmux::test
