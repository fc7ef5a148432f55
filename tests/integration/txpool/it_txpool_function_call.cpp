// FunctionCall messages (libpq's PQfn, the "fast-path" interface) in transaction pooling: a function pgmux does not
// look into may leave state in the session (set_config, a session advisory lock), which must stay the caller's,
// as on a direct connection: other clients never see it, and the caller keeps it. The large-object functions
// libpq calls so leave nothing past their transaction and keep the client pooled. Each case runs directly against
// the primary (the oracle), then through pgmux with and without the read/write split. From a black-box hunt.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <libpq/libpq-fs.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_function_call";
constexpr int kSetConfig = 2078;      // set_config(text, text, boolean)
constexpr int kAdvisoryLock = 2880;   // pg_advisory_lock(bigint)

PQArgBlock text_arg(const std::string& text) {
  PQArgBlock arg{};
  arg.len = static_cast<int>(text.size());
  arg.isint = 0;
  arg.u.ptr = reinterpret_cast<int*>(const_cast<char*>(text.data()));
  return arg;
}

// set_config(name, value, false) by FunctionCall: the value it returns, or the error.
std::string fast_set_config(PGconn* conn, const std::string& name, const std::string& value) {
  static char no = 0;
  std::vector<PQArgBlock> args = {text_arg(name), text_arg(value), {}};
  args[2].len = 1;
  args[2].u.ptr = reinterpret_cast<int*>(&no);
  char result[256] = {};
  int result_len = 0;
  PgResult res(PQfn(conn, kSetConfig, reinterpret_cast<int*>(result), &result_len, 0, args.data(), 3));
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) return "error " + sqlstate(res.get());
  return std::string(result, static_cast<size_t>(result_len));
}

// pg_advisory_lock(key) by FunctionCall: "" or the error.
std::string fast_advisory_lock(PGconn* conn, int32_t key) {
  unsigned char be[8] = {};
  const uint32_t low = htonl(static_cast<uint32_t>(key));
  std::memcpy(be + 4, &low, 4);
  PQArgBlock arg{};
  arg.len = 8;
  arg.u.ptr = reinterpret_cast<int*>(be);
  int unused = 0;
  int result_len = 0;
  PgResult res(PQfn(conn, kAdvisoryLock, &unused, &result_len, 0, &arg, 1));
  return PQresultStatus(res.get()) == PGRES_COMMAND_OK ? "" : "error " + sqlstate(res.get());
}

// What the caller and three other clients see, each other client inside a transaction (so each holds a server
// of its own while the others look).
std::string session_state_after_function_calls(const std::string& ci) {
  PgConn caller = connect(ci);
  std::string seen = "set_config returned " + fast_set_config(caller.get(), "statement_timeout", "1234");
  seen += "; lock " + fast_advisory_lock(caller.get(), 777);
  std::vector<PgConn> others;
  for (int i = 0; i < 3; ++i) {
    others.push_back(connect(ci));
    exec(others.back().get(), "BEGIN");
    seen += "; other sees " + scalar(others.back().get(), "SHOW statement_timeout") + " and " +
            scalar(others.back().get(), "SELECT pg_try_advisory_lock(777)::text");
  }
  for (PgConn& other : others) exec(other.get(), "ROLLBACK");
  seen += "; caller sees " + scalar(caller.get(), "SHOW statement_timeout") + " and holds " +
          scalar(caller.get(),
                 "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                 "AND objid = 777");
  return seen;
}

// Large objects through libpq's lo_* calls (FunctionCall messages), then whether another client gets a server
// of a pool of one meanwhile: the caller is not pinned.
std::string large_object_round_trip(const std::string& ci) {
  PgConn caller = connect(ci);
  exec(caller.get(), "BEGIN");
  const Oid oid = lo_creat(caller.get(), INV_READ | INV_WRITE);
  const int fd = lo_open(caller.get(), oid, INV_WRITE);
  const std::string text = "large object text";
  const int written = lo_write(caller.get(), fd, text.data(), text.size());
  lo_close(caller.get(), fd);
  exec(caller.get(), "COMMIT");
  PgConn other = connect(ci);
  std::string seen = "written " + std::to_string(written) + "; other " + scalar(other.get(), "SELECT 'runs'");
  exec(caller.get(), "BEGIN");
  const int reader = lo_open(caller.get(), oid, INV_READ);
  char back[64] = {};
  const int read = lo_read(caller.get(), reader, back, sizeof back);
  lo_close(caller.get(), reader);
  lo_unlink(caller.get(), oid);
  exec(caller.get(), "COMMIT");
  seen += "; read back " + std::string(back, read > 0 ? static_cast<size_t>(read) : 0);
  seen += "; other " + scalar(other.get(), "SELECT 'still runs'");
  return seen;
}

struct Fixture {
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;
  Fixture(bool split, int pool_size)
      : proxy((fresh_database(kDb, true), config(listen, split, pool_size).dump()), listen) {
    ci = app_conninfo(proxy.port(), kDb);
    wait_serving(ci);
  }
  ~Fixture() { drop_database_quietly(kDb); }
  static nlohmann::json config(int listen, bool split, int pool_size) {
    nlohmann::json c = txpool_config(listen, kDb, pool_size, split);
    c["workers"] = 1;
    c["timeouts"]["query_wait_timeout"] = 5;
    return c;
  }
};

std::string direct_conninfo() { return conninfo(cluster_ports().primary, "app", "app", kDb); }

}  // namespace

TEST_CASE("a function called by FunctionCall keeps what it leaves in the session to its caller") {
  std::string direct;
  {
    Fixture unused(false, 20);  // the database
    direct = session_state_after_function_calls(direct_conninfo());
  }
  REQUIRE(direct == "set_config returned 1234ms; lock ; other sees 0 and false; other sees 0 and false; other sees 0 "
                    "and false; caller sees 1234ms and holds 1");
  for (bool split : {false, true}) {
    CAPTURE(split);
    Fixture f(split, 20);
    CHECK(session_state_after_function_calls(f.ci) == direct);
  }
}

TEST_CASE("large objects through FunctionCall work and leave the client pooled") {
  std::string direct;
  {
    Fixture unused(false, 1);
    direct = large_object_round_trip(direct_conninfo());
  }
  REQUIRE(direct == "written 17; other runs; read back large object text; other still runs");
  for (bool split : {false, true}) {
    CAPTURE(split);
    Fixture f(split, 1);
    CHECK(large_object_round_trip(f.ci) == direct);
  }
}
