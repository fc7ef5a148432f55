// pgmux command line: -c FILE runs the proxy, --check validates a config, --version, --help.
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "conf/loader.hpp"
#include "proxy/net/log.hpp"
#include "proxy/net/tls_context.hpp"
#include "proxy/control/server.hpp"

namespace {

void print_help() {
  std::printf(
      "pgmux %s - PostgreSQL connection pooler and read/write router\n\n"
      "Usage:\n"
      "  pgmux -c FILE            run with the JSON config FILE\n"
      "  pgmux --check -c FILE    validate FILE, print every problem, exit non-zero if any\n"
      "  pgmux --version          print the version\n"
      "  pgmux --help             this text\n\n"
      "Signals: SIGTERM stops accepting and lets sessions finish (up to shutdown_timeout);\n"
      "         SIGINT closes every connection at once;\n"
      "         SIGHUP re-reads FILE (an invalid file is rejected and the running config kept)\n"
      "         and reopens the log file; SIGUSR1 only reopens the log file (logrotate).\n"
      "Under systemd (Type=notify), readiness and shutdown are reported to $NOTIFY_SOCKET.\n",
      PGMUX_VERSION);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else if (arg == "--check") {
      check_only = true;
    } else if (arg == "--version" || arg == "-V") {
      std::printf("pgmux %s\n", PGMUX_VERSION);
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      print_help();
      return 0;
    } else {
      std::fprintf(stderr, "pgmux: unknown argument \"%s\" (see pgmux --help)\n", arg.c_str());
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "pgmux: no config file given; use pgmux -c FILE (see pgmux --help)\n");
    return 2;
  }

  pgmux::conf::LoadResult loaded = pgmux::conf::load_config_file(config_path);
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors) {
      std::fprintf(stderr, "pgmux: %s: %s\n", config_path.c_str(), error.to_string().c_str());
    }
    std::fprintf(stderr, "pgmux: %s: %zu error(s), not starting\n", config_path.c_str(), loaded.errors.size());
    return 1;
  }
  // The TLS files are part of the config: a certificate that does not load fails --check and the start alike.
  {
    std::string error;
    const bool client_side_ok = !loaded.config->tls.client.enabled() ||
                                pgmux::proxy::TlsServerContext::create(loaded.config->tls.client, &error);
    if (!client_side_ok || !pgmux::proxy::make_backend_tls_contexts(*loaded.config, &error)) {
      std::fprintf(stderr, "pgmux: %s: %s\npgmux: %s: 1 error(s), not starting\n", config_path.c_str(),
                   error.c_str(), config_path.c_str());
      return 1;
    }
  }
  if (check_only) {
    std::printf("%s: configuration is valid\n", config_path.c_str());
    return 0;
  }
  pgmux::proxy::Log::configure(loaded.config->logging.level, loaded.config->logging.file,
                              loaded.config->logging.format);
  // Every client and server connection is a file descriptor: take all the kernel allows this process.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 &&
      files.rlim_cur < static_cast<rlim_t>(loaded.config->max_client_conn) + 100) {
    LOG_WARN("open file limit %llu is below max_client_conn %d: clients past it will be refused by the kernel",
             static_cast<unsigned long long>(files.rlim_cur), loaded.config->max_client_conn);
  }
  return pgmux::proxy::run_server(config_path, loaded.config);
}
