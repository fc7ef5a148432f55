// driver_diff: runs one real-driver script against the primary directly, then through pgmux in each requested
// mode, and compares the transcripts (the script's stdout) line for line. A client driver must not be able to
// tell pgmux from PostgreSQL, so any difference is a failure; the unified diff and pgmux's log are printed.
//
//   driver_diff --db NAME [--modes session,transaction,split,split_transaction] [--timeout SECONDS] -- CMD ARGS...
//
// The script finds where to connect in PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (libpq's variables, which
// psycopg, asyncpg and node-postgres read too). It must print "END" as its last line, and the direct run must
// contain no "CHECK FAILED" line (the script's own assertions about PostgreSQL's answers) and no "UNCAUGHT"
// (an exception the script did not expect): a comparison of two equally broken runs would prove nothing.
// Each run is killed (its process group) after --timeout seconds.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using nlohmann::json;
using namespace pgmux::test;

namespace {

struct Options {
  std::string db;
  std::vector<std::string> modes{"session", "transaction", "split", "split_transaction"};
  double timeout_seconds = 60;
  std::vector<std::string> command;
};

struct ScriptRun {
  std::string transcript;
  int exit_code = 0;
  bool timed_out = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "driver_diff: %s\nusage: driver_diff --db NAME [--modes m1,m2] [--timeout S] -- CMD ARGS...\n",
               why.c_str());
  std::exit(2);
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Options parse_options(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (i + 1 >= argc) usage("missing value after " + arg);
    const std::string value = argv[++i];
    if (arg == "--db") {
      o.db = value;
    } else if (arg == "--modes") {
      o.modes = split_commas(value);
    } else if (arg == "--timeout") {
      o.timeout_seconds = std::atof(value.c_str());
    } else {
      usage("unknown option " + arg);
    }
  }
  for (++i; i < argc; ++i) o.command.emplace_back(argv[i]);
  if (o.db.empty() || o.command.empty()) usage("--db and a command are required");
  return o;
}

// Child side of run_script: the environment the script connects with, then exec.
[[noreturn]] void exec_script(const Options& options, int port, int stdout_fd) {
  setpgid(0, 0);  // its own process group, so a timeout stops the JVM/node/python and anything it started
  dup2(stdout_fd, STDOUT_FILENO);
  close(stdout_fd);
  setenv("PGHOST", "127.0.0.1", 1);
  setenv("PGPORT", std::to_string(port).c_str(), 1);
  setenv("PGUSER", "app", 1);
  setenv("PGPASSWORD", "app", 1);
  setenv("PGDATABASE", options.db.c_str(), 1);
  setenv("PGCONNECT_TIMEOUT", "15", 1);
  setenv("PGSSLMODE", "disable", 1);
  setenv("TZ", "UTC", 1);
  setenv("PGTZ", "UTC", 1);
  std::vector<char*> args;
  for (const std::string& a : options.command) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  std::perror("driver_diff: exec");
  _exit(127);
}

int wait_child(pid_t child) {
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs the script with PGPORT=port; its stdout is the transcript, its stderr goes to ours.
ScriptRun run_script(const Options& options, int port) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    close(fds[0]);
    exec_script(options, port, fds[1]);
  }
  close(fds[1]);
  ScriptRun run;
  const double deadline = routing::now_seconds() + options.timeout_seconds;
  char buf[65536];
  while (true) {
    const double left = deadline - routing::now_seconds();
    if (left <= 0) {
      run.timed_out = true;
      kill(-child, SIGKILL);  // the script's own process group (setpgid in the child)
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left * 1000) + 1) <= 0) continue;
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) {
      run.transcript.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  run.exit_code = wait_child(child);
  if (run.timed_out) {
    run.transcript += "\nRUNNER: killed after " + std::to_string(options.timeout_seconds) + " s\n";
  }
  return run;
}

// pgmux for `db` in one of the modes; the app user logs in with SCRAM, as it does on the primary.
json mode_config(const std::string& mode, int listen, const std::string& db) {
  constexpr int kTransactionPool = 4;  // fewer servers than the scripts' connections: requests change servers
  const bool split = mode == "split" || mode == "split_transaction";
  const bool transaction = mode == "transaction" || mode == "split_transaction";
  if (!split && !transaction && mode != "session") {
    usage("unknown mode " + mode + " (session, transaction, split, split_transaction)");
  }
  json config = split ? routing::routing_config(listen, cluster_ports()) : default_config(listen);
  for (json& user : config["users"]) {
    if (user["name"] == "app") user.erase("auth_method");
  }
  json database = {{"name", db}, {"pool_size", transaction ? kTransactionPool : 20}};
  if (transaction) database["pool_mode"] = "transaction";
  config["databases"] = json::array({database});
  if (!split) config["routing"] = {{"read_write_split", false}};
  return config;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

// Prints `diff -u direct via-pgmux` to stderr.
void print_diff(const std::string& mode, const std::string& direct, const std::string& via) {
  char dir_template[] = "/tmp/pgmux-driver-diff-XXXXXX";
  if (!mkdtemp(dir_template)) return;
  const std::string dir = dir_template;
  const std::string a = dir + "/direct", b = dir + "/" + mode;
  if (write_file(a, direct) && write_file(b, via)) {
    std::fflush(stderr);
    const std::string cmd = "diff -u '" + a + "' '" + b + "' >&2";
    if (std::system(cmd.c_str()) < 0) std::fprintf(stderr, "driver_diff: cannot run diff\n");
  }
  unlink(a.c_str());
  unlink(b.c_str());
  rmdir(dir.c_str());
}

bool ends_with_end_line(const std::string& transcript) {
  const std::string tail = "\nEND\n";
  if (transcript == "END\n") return true;
  return transcript.size() >= tail.size() &&
         transcript.compare(transcript.size() - tail.size(), tail.size(), tail) == 0;
}

// The direct run is the oracle: it must be complete and agree with the script's own expectations.
bool direct_run_valid(const ScriptRun& run) {
  bool ok = run.exit_code == 0 && !run.timed_out && ends_with_end_line(run.transcript) &&
            run.transcript.find("CHECK FAILED") == std::string::npos &&
            run.transcript.find("UNCAUGHT") == std::string::npos;
  if (!ok) {
    std::fprintf(stderr, "driver_diff: the direct run is not a valid reference (exit %d%s):\n%s\n", run.exit_code,
                 run.timed_out ? ", timed out" : "", run.transcript.c_str());
  }
  return ok;
}

size_t line_count(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// Starts pgmux in `mode`, waits until it serves (and, with the split on, until both standbys serve reads), runs
// the script through it and compares with the direct transcript.
bool run_mode(const Options& options, const std::string& mode, const ScriptRun& direct) {
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(mode_config(mode, listen, options.db).dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", options.db);
  // pgmux accepts clients before its prober has found the primary; the script starts once reads are served
  // (with the split on, by both standbys: up to 40 s; 20 s was once too short under the sanitizer build's load, and
  // its log did not say why).
  const ClusterPorts ports = cluster_ports();
  const bool serving = mode.rfind("split", 0) == 0 && !proxy.direct()
                           ? routing::wait_ports_serving(ci, {ports.standby1, ports.standby2}, 40)
                           : routing::wait_until([&] { return routing::fresh_read_port(ci) > 0; }, 10);
  if (!serving) {
    std::fprintf(stderr, "driver_diff: %s: pgmux did not serve reads in time\n", mode.c_str());
    if (proxy.process()) {
      std::fprintf(stderr, "--- pgmux log (%s) ---\n%s\n", mode.c_str(), proxy.process()->log().c_str());
    }
    return false;
  }
  const ScriptRun via = run_script(options, proxy.port());
  const bool same = via.transcript == direct.transcript && via.exit_code == direct.exit_code;
  if (same) {
    std::fprintf(stderr, "driver_diff: %s: identical to direct (%zu lines)\n", mode.c_str(),
                 line_count(via.transcript));
    return true;
  }
  std::fprintf(stderr, "driver_diff: %s: differs from direct (exit %d vs %d%s); diff direct -> %s:\n", mode.c_str(),
               via.exit_code, direct.exit_code, via.timed_out ? ", timed out" : "", mode.c_str());
  print_diff(mode, direct.transcript, via.transcript);
  if (proxy.process()) {
    std::fprintf(stderr, "--- pgmux log (%s) ---\n%s\n", mode.c_str(), proxy.process()->log().c_str());
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  try {
    routing::recreate_database(cluster_ports(), options.db);
    const ScriptRun direct = run_script(options, cluster_ports().primary);
    if (!direct_run_valid(direct)) return 1;
    std::fprintf(stderr, "driver_diff: direct: %zu lines\n", line_count(direct.transcript));
    bool all_same = true;
    for (const std::string& mode : options.modes) all_same = run_mode(options, mode, direct) && all_same;
    routing::drop_database(cluster_ports(), options.db);
    return all_same ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "driver_diff: %s\n", e.what());
    return 1;
  }
}
