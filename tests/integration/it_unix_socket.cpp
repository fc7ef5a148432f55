// A listener whose host is a directory: a Unix-domain socket, <dir>/.s.PGSQL.<port>, as libpq's host= and
// PostgreSQL's unix_socket_directories name it. Clients log in and cancel through it; hba rules of type local
// decide about them (and host rules do not), with PostgreSQL's messages naming the host "[local]"; no TLS there;
// a socket file a stopped process left is replaced, another file is not; the file goes when pgmux stops.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {

// A short directory of its own under /tmp: a socket path must fit in 107 bytes, which a build tree may not.
struct SocketDir {
  std::string path;
  SocketDir() {
    char pattern[] = "/tmp/pgmux-it-sock-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~SocketDir() { std::filesystem::remove_all(path); }
  std::string file(int port) const { return path + "/.s.PGSQL." + std::to_string(port); }
};

nlohmann::json with_socket(int listen, const SocketDir& dir) {
  nlohmann::json config = default_config(listen);
  config["listeners"] = nlohmann::json::array({{{"host", "127.0.0.1"}, {"port", listen}},
                                               {{"host", dir.path}, {"port", listen}}});
  return config;
}

std::string socket_conninfo(const SocketDir& dir, int port, const std::string& user = "app") {
  return "host=" + dir.path + " port=" + std::to_string(port) + " user=" + user + " password=app dbname=app " +
         "connect_timeout=5";
}

}  // namespace

namespace {

void check_socket_clients(const std::string& mode) {
  CAPTURE(mode);
  SocketDir dir;
  const int listen = pick_listen_port();
  {
    nlohmann::json config = with_socket(listen, dir);
    config["databases"][0]["pool_mode"] = mode;
    ProxyUnderTest proxy(config.dump(), listen);
    struct stat st {};
    REQUIRE(stat(dir.file(listen).c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0777);
    PgConn conn = connect(socket_conninfo(dir, listen));
    CHECK(scalar(conn.get(), "SELECT current_user || ' ' || 6 * 7") == "app 42");
    REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);
    CHECK_FALSE(wait_readable(conn.get(), 0.3));
    PGcancel* cancel = PQgetCancel(conn.get());
    char error[256] = {0};
    CHECK(PQcancel(cancel, error, sizeof error) == 1);
    PQfreeCancel(cancel);
    REQUIRE(wait_readable(conn.get(), 5.0));
    PgResult cancelled(PQgetResult(conn.get()));
    CHECK(sqlstate(cancelled.get()) == "57014");
    while (PgResult rest{PQgetResult(conn.get())}) {
    }
    CHECK(scalar(conn.get(), "SELECT 1") == "1");
    // libpq never asks for TLS on a Unix-domain socket; a raw SSLRequest is refused ('N') like PostgreSQL's.
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    dir.file(listen).copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    const unsigned char ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    REQUIRE(write(fd, ssl_request, sizeof ssl_request) == 8);
    char answer = 0;
    CHECK(read(fd, &answer, 1) == 1);
    CHECK(answer == 'N');
    close(fd);
  }
  CHECK_FALSE(std::filesystem::exists(dir.file(listen)));  // removed as pgmux stopped
}

}  // namespace

TEST_CASE("clients log in, query and cancel through a Unix-domain socket listener") {
  if (direct_mode()) return;  // the cluster's own sockets are not this test's business
  check_socket_clients("session");
  check_socket_clients("transaction");
}

// PostgreSQL names a Unix-domain socket client's host "[local]" in its hba messages.
TEST_CASE("hba rules of type local decide about socket clients, host rules about TCP ones") {
  if (direct_mode()) return;
  SocketDir dir;
  const int listen = pick_listen_port();
  nlohmann::json config = with_socket(listen, dir);
  config["hba"] = nlohmann::json::parse(R"([
      {"type": "local", "database": "all", "user": "app", "method": "reject"},
      {"type": "local", "database": "all", "user": "postgres", "method": "trust"},
      {"type": "host", "database": "all", "user": "all", "address": "all", "method": "scram-sha-256"}])");
  ProxyUnderTest proxy(config.dump(), listen);
  PgConn rejected = try_connect(socket_conninfo(dir, listen));
  CHECK(PQstatus(rejected.get()) == CONNECTION_BAD);
  CHECK_MESSAGE(std::string(PQerrorMessage(rejected.get())).find(
                    "pg_hba.conf rejects connection for host \"[local]\", user \"app\", database \"app\", "
                    "no encryption") != std::string::npos,
                PQerrorMessage(rejected.get()));
  PgConn trusted = connect(socket_conninfo(dir, listen, "postgres") + " password=wrong");
  CHECK(scalar(trusted.get(), "SELECT current_user") == "postgres");
  PgConn tcp = connect(proxy.app_conninfo());  // the host rule: SCRAM over TCP
  CHECK(scalar(tcp.get(), "SELECT 1") == "1");
  config["hba"].erase(config["hba"].begin(), config["hba"].begin() + 2);  // only the host rule is left
  proxy.process()->write_config(config.dump());
  proxy.process()->send_signal(SIGHUP);
  std::string message;
  for (int i = 0; i < 50 && message.find("no pg_hba.conf entry") == std::string::npos; ++i) {
    usleep(100000);
    PgConn none = try_connect(socket_conninfo(dir, listen));
    message = PQerrorMessage(none.get());
  }
  CHECK_MESSAGE(message.find("no pg_hba.conf entry for host \"[local]\", user \"app\", database \"app\", "
                             "no encryption") != std::string::npos,
                message);
}

TEST_CASE("a socket file nobody listens on is replaced; a live one (full backlog too) or another file is not") {
  if (direct_mode()) return;
  SocketDir dir;
  const int listen = pick_listen_port();
  {  // a socket bound and closed without removing its file, as a killed process leaves it
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    dir.file(listen).copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    close(fd);
  }
  {
    ProxyUnderTest proxy(with_socket(listen, dir).dump(), listen);
    PgConn conn = connect(socket_conninfo(dir, listen));
    CHECK(scalar(conn.get(), "SELECT 1") == "1");
    // A second pgmux on the same socket (and another TCP port) refuses to start, naming the socket.
    const int other = free_port_from(listen + 1);
    nlohmann::json second = with_socket(other, dir);
    second["listeners"][1]["port"] = listen;
    second["metrics_listen"] = "";
    try {
      PgmuxProcess again(second.dump(), other);
      FAIL("a second pgmux started on a socket in use");
    } catch (const std::runtime_error& e) {
      CHECK_MESSAGE(std::string(e.what()).find("another process (maybe another pgmux) is listening there") !=
                        std::string::npos, e.what());
    }
    PgConn still = connect(socket_conninfo(dir, listen));  // the first one's socket is untouched
    CHECK(scalar(still.get(), "SELECT 2") == "2");
  }
  {  // a live listener whose backlog is full: a blocking connect would hold pgmux's start up; it is in use
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    dir.file(listen).copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(fd, 0) == 0);
    std::vector<int> queued;
    bool full = false;
    for (int i = 0; i < 8 && !full; ++i) {  // never accepted: the backlog fills, later connects get EAGAIN
      const int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (::connect(c, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
        queued.push_back(c);
        continue;
      }
      full = errno == EAGAIN;
      close(c);
    }
    CHECK(full);  // else this case tests nothing
    try {
      PgmuxProcess busy(with_socket(listen, dir).dump(), listen);
      FAIL("pgmux started on a socket in use");
    } catch (const std::runtime_error& e) {
      CHECK_MESSAGE(std::string(e.what()).find("another process (maybe another pgmux) is listening there") !=
                        std::string::npos, e.what());
    }
    for (int c : queued) close(c);
    close(fd);
    std::filesystem::remove(dir.file(listen));
  }
  std::ofstream(dir.file(listen)) << "not a socket";
  try {
    PgmuxProcess refused(with_socket(listen, dir).dump(), listen);
    FAIL("pgmux started over a regular file");
  } catch (const std::runtime_error& e) {
    CHECK_MESSAGE(std::string(e.what()).find("the file exists and is not a socket") != std::string::npos, e.what());
  }
  CHECK(std::filesystem::is_regular_file(dir.file(listen)));  // left alone
}

// The socket file is removed at exit only if it is still the one this pgmux bound: replaced meanwhile (another
// process took the path while this one was stopping), it is left to its new owner.
TEST_CASE("a socket file replaced while pgmux runs is left in place when pgmux stops") {
  if (direct_mode()) return;
  SocketDir dir;
  const int listen = pick_listen_port();
  {
    ProxyUnderTest proxy(with_socket(listen, dir).dump(), listen);
    REQUIRE(std::filesystem::remove(dir.file(listen)));
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    dir.file(listen).copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);  // another owner's socket
    close(fd);
  }
  CHECK(std::filesystem::exists(dir.file(listen)));
}
