// with_pgmux CMD [ARGS...]: starts pgmux with the default test config (or, with PGMUX_TEST_DIRECT=1, nothing),
// runs CMD with PGMUX_PORT (where to connect) and PGMUX_PRIMARY_PORT in its environment, stops pgmux and
// exits with CMD's status. Prints pgmux's log when CMD fails. Used by the shell-script tests.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "tests/support/pgmux_process.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: with_pgmux CMD [ARGS...]\n");
    return 2;
  }
  try {
    pgmux::test::ProxyUnderTest target;
    setenv("PGMUX_PORT", std::to_string(target.port()).c_str(), 1);
    setenv("PGMUX_PRIMARY_PORT", std::to_string(pgmux::test::cluster_ports().primary).c_str(), 1);
    std::fprintf(stderr, "with_pgmux: %s on port %d\n", target.direct() ? "direct to primary" : "pgmux",
                 target.port());
    std::fflush(stderr);

    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
      execvp(argv[1], argv + 1);
      std::perror("with_pgmux: exec");
      _exit(127);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
      if (errno != EINTR) return 2;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && target.process()) {
      std::fprintf(stderr, "with_pgmux: command failed (%d); pgmux log:\n%s\n", code, target.process()->log().c_str());
    }
    return code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "with_pgmux: %s\n", e.what());
    return 2;
  }
}
