// Pool (proxy/server/pool.*) with a fake clock, fake clients and fake server connections (tests/unit/pool_fakes.hpp).
#include "proxy/server/pool.hpp"

#include <doctest/doctest.h>

#include <algorithm>

#include "protocol/sqlstate.hpp"
#include "pool_fakes.hpp"

using namespace pool_fakes;

TEST_CASE_FIXTURE(PoolFixture, "pool: waiting clients are served first come, first served") {
  make_pool(1, PoolMode::Session);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client("c2");
  FakeClient& c3 = client("c3");
  c2.ask(*pool, host.clock);
  c3.ask(*pool, host.clock);
  CHECK(pool->waiting_count() == 2);
  CHECK(host.servers.size() == 1);  // pool_size 1: no second server

  // Session pooling resets a released server before the next client gets it.
  c1.give_back(*pool);
  CHECK(server(1).queries == std::vector<std::string>{"DISCARD ALL"});
  CHECK(c2.server == nullptr);
  server(1).answer(true);
  c2.give_back(*pool);
  server(1).answer(true);
  CHECK(events == std::vector<std::string>{"c1 got S-1", "c2 got S-1", "c3 got S-1"});
}

TEST_CASE_FIXTURE(PoolFixture, "pool: the idle server used last is handed out first, and none is opened") {
  make_pool(2, PoolMode::Transaction);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client_holding_server("c2");
  c1.give_back(*pool);  // clean: idle at once, no reset in transaction pooling
  c2.give_back(*pool);
  CHECK(pool->idle_count() == 2);
  CHECK(server(1).queries.empty());
  FakeClient& c3 = client("c3");
  c3.ask(*pool, host.clock);
  CHECK(c3.server == &server(2));  // the warmest
  CHECK(host.servers.size() == 2);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: pool_size bounds the servers; the others wait and slack is asked for") {
  make_pool(2, PoolMode::Session);
  FakeClient& c1 = client("c1");
  FakeClient& c2 = client("c2");
  FakeClient& c3 = client("c3");
  for (FakeClient* c : {&c1, &c2, &c3}) c->ask(*pool, host.clock);
  CHECK(host.servers.size() == 2);
  CHECK(server(1).connecting);
  CHECK(server(1).opened_for() == &c1);
  CHECK(server(2).opened_for() == &c2);
  CHECK(budget->used.load() == 2);
  CHECK(host.shed_requests == 1);  // nothing idle here: other workers are asked to give one back
  server(2).log_in();  // the first server up goes to the head of the queue, whoever it was opened for
  CHECK(c1.server == &server(2));
  server(1).log_in();
  CHECK(c2.server == &server(1));
  CHECK(c3.server == nullptr);
  CHECK(c3.error_state.empty());
  CHECK(pool->waiting_count() == 1);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: the reserve pool opens only for a client that waited reserve_pool_timeout") {
  make_pool(1, PoolMode::Session, /*reserve=*/1);
  host.config_timeouts.reserve_pool_timeout = 5;
  client_holding_server("c1");
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  host.clock += 4;
  tick();
  CHECK(host.servers.size() == 1);
  host.clock += 1;
  tick();
  REQUIRE(host.servers.size() == 2);
  CHECK(server(2).opened_for() == &c2);
  server(2).log_in();
  CHECK(c2.server == &server(2));
  CHECK(budget->used.load() == 2);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: query_wait_timeout refuses the waiting client with 53300") {
  make_pool(1, PoolMode::Session);
  host.config_timeouts.query_wait_timeout = 10;
  client_holding_server("c1");
  FakeClient& c2 = client("c2");
  FakeClient& c3 = client("c3");
  c2.ask(*pool, host.clock);
  host.clock += 5;
  c3.ask(*pool, host.clock);
  host.clock += 4;
  tick();
  CHECK(c2.error_state.empty());
  host.clock += 1;
  tick();
  CHECK(c2.failure == Failure::QueryWaitTimeout);
  CHECK(c2.error_state == pgmux::protocol::sqlstate::kTooManyConnections);
  CHECK(c2.error_message.find("query_wait_timeout") != std::string::npos);
  CHECK(c2.error_message.find("app/app@b1") != std::string::npos);  // the pool's name
  CHECK(c3.error_state.empty());  // it has waited 5 s only
  CHECK(pool->waiting_count() == 1);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: a failed connect goes to the client it was opened for") {
  make_pool(2, PoolMode::Session);
  FakeClient& c1 = client("c1");
  FakeClient& c2 = client("c2");
  c1.wanted = params("application_name", "one");
  c2.wanted = params("DateStyle", "nonsense");
  c1.ask(*pool, host.clock);
  c2.ask(*pool, host.clock);
  CHECK(server(1).startup_params().entries() == c1.wanted.entries());  // session pooling: the client's own
  CHECK(server(2).startup_params().entries() == c2.wanted.entries());
  server(2).refuse_login("22023", "invalid value for parameter \"DateStyle\"");
  CHECK(c2.error_state == "22023");
  CHECK(c2.error_message == "invalid value for parameter \"DateStyle\"");  // PostgreSQL's own words
  CHECK(c2.error_detail == "pgmux pool \"app/app@b1\", backend \"b1\" at 127.0.0.1:5432");
  CHECK(c1.error_state.empty());  // a bad parameter concerns its client only
  CHECK(host.counters.server_connect_failures.get() == 1);
  server(1).log_in(c1.wanted);
  CHECK(c1.server == &server(1));
}

TEST_CASE("pool: an unusable backend with no server left tells every waiting client at once") {
  for (const std::string sqlstate : {"08006", "57P03", "28P01", "3D000"}) {
    CAPTURE(sqlstate);
    PoolFixture f;
    f.make_pool(1, PoolMode::Session);
    for (const char* name : {"c1", "c2", "c3"}) f.client(name).ask(*f.pool, f.host.clock);
    REQUIRE(f.host.servers.size() == 1);
    f.server(1).refuse_login(sqlstate, "backend says no");
    CHECK(f.events ==
          std::vector<std::string>{"c1 refused " + sqlstate, "c2 refused " + sqlstate, "c3 refused " + sqlstate});
    CHECK(f.pool->waiting_count() == 0);
    CHECK(f.host.servers.size() == 1);  // nothing retried for them
  }
}

TEST_CASE_FIXTURE(PoolFixture, "pool: an unusable backend waits for query_wait_timeout while a server is still up") {
  make_pool(2, PoolMode::Session);
  client_holding_server("c1");
  FakeClient& c2 = client("c2");
  FakeClient& c3 = client("c3");
  c2.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 2);
  c3.ask(*pool, host.clock);
  server(2).refuse_login("08006", "could not connect to server: connection refused");
  CHECK(c2.error_state == "08006");
  CHECK(c3.error_state.empty());  // a connection is tried for it in the freed slot
  CHECK(pool->waiting_count() == 1);
  REQUIRE(host.servers.size() == 3);
  CHECK(server(3).opened_for() == &c3);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: a client that stops waiting is skipped, and the server opened for it stays") {
  make_pool(1, PoolMode::Session);
  FakeClient& c1 = client("c1");
  c1.ask(*pool, host.clock);
  pool->withdraw(&c1);  // it left while its server was connecting
  CHECK(server(1).opened_for() == nullptr);
  server(1).log_in();
  CHECK(c1.server == nullptr);
  CHECK(pool->idle_count() == 1);

  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  REQUIRE(c2.server == &server(1));
  FakeClient& c3 = client("c3");
  FakeClient& c4 = client("c4");
  c3.ask(*pool, host.clock);
  c4.ask(*pool, host.clock);
  pool->withdraw(&c3);
  c2.give_back(*pool);
  server(1).answer(true);
  CHECK(c3.server == nullptr);
  CHECK(c4.server == &server(1));
}

// Before, every waiter opened a server of its own: clients that came faster than a login took filled the pool
// with connections still logging in (it_routing_split saw reads sent to the other standby for want of room).
TEST_CASE_FIXTURE(PoolFixture, "pool: a server still connecting for no one is taken over by the next waiter") {
  make_pool(3, PoolMode::Session);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 2);
  CHECK(server(2).opened_for() == &c2);
  c1.give_back(*pool);
  server(1).answer(true);  // its reset done: the server given back serves c2 before its own logs in
  CHECK(c2.server == &server(1));
  CHECK(server(2).opened_for() == nullptr);

  FakeClient& c3 = client("c3");
  c3.ask(*pool, host.clock);
  CHECK(host.servers.size() == 2);  // none opened: c3 waits for the one on its way
  CHECK(server(2).opened_for() == &c3);
  FakeClient& c4 = client("c4");
  c4.wanted = params("application_name", "other");
  c4.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 3);  // session pooling: a server opened with other parameters is not its own
  CHECK(server(3).opened_for() == &c4);
  server(2).log_in();
  CHECK(c3.server == &server(2));
  CHECK(c4.server == nullptr);
  CHECK(budget->used.load() == 3);
}

// The one that took it over did not open it: a failure of its login (the backend full, say) is not told to it, which
// might have been served by a server given back (the budget spent); it waits on, and a server of its own opens.
TEST_CASE_FIXTURE(PoolFixture, "pool: a client that took over a connection does not hear its failure") {
  make_pool(2, PoolMode::Transaction);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 2);
  pool->withdraw(&c2);  // gone while its server logs in
  FakeClient& c3 = client("c3");
  c3.ask(*pool, host.clock);
  REQUIRE(server(2).opened_for() == &c3);
  CHECK(server(2).adopted());
  server(2).refuse_login("53300", "sorry, too many clients already");
  CHECK(c3.error_state.empty());
  CHECK(pool->waiting_count() == 1);
  REQUIRE(host.servers.size() == 3);  // its slot opens one for c3
  CHECK(server(3).opened_for() == &c3);
  CHECK_FALSE(server(3).adopted());
  server(3).refuse_login("53300", "sorry, too many clients already");
  CHECK(c3.error_state == "53300");  // its own
  c1.give_back(*pool);
}

// A connection its login will close (RECONNECT came after it started) is not taken over: the client would wait for
// two logins.
TEST_CASE_FIXTURE(PoolFixture, "pool: a connection RECONNECT retired is not taken over") {
  make_pool(3, PoolMode::Transaction);
  FakeClient& c1 = client("c1");
  c1.ask(*pool, host.clock);
  pool->withdraw(&c1);
  host.clock += 1;
  pool->reconnect();
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 2);
  CHECK(server(1).opened_for() == nullptr);
  CHECK(server(2).opened_for() == &c2);
}

// A login this slow may hang until server_connect_timeout while one of the client's own would be quick (a hunt saw
// a client wait 2 s on a connection stuck behind a backend that answered everyone else at once).
TEST_CASE_FIXTURE(PoolFixture, "pool: a slow connection is not taken over, and one taken over is let go when slow") {
  make_pool(3, PoolMode::Transaction);
  FakeClient& c1 = client("c1");
  c1.ask(*pool, host.clock);
  pool->withdraw(&c1);
  host.clock += 0.6;
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 2);  // server 1 has been logging in for 0.6 s: c2 gets one of its own
  CHECK(server(1).opened_for() == nullptr);
  CHECK(server(2).opened_for() == &c2);
  server(2).log_in();
  REQUIRE(c2.server == &server(2));

  FakeClient& c3 = client("c3");  // takes over nothing slow yet: server 3, opened for c4 who left
  FakeClient& c4 = client("c4");
  c4.ask(*pool, host.clock);
  pool->withdraw(&c4);
  host.clock += 0.1;
  c3.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 3);
  CHECK(server(3).opened_for() == &c3);
  host.clock += 0.45;
  tick();  // server 3 has taken 0.55 s: c3 lets go of it, but the budget (3) is spent
  CHECK(server(3).opened_for() == nullptr);
  CHECK(host.servers.size() == 3);
  server(1).log_in();  // the slow one came after all: the first server up serves the waiter
  CHECK(c3.server == &server(1));
  c2.give_back(*pool);
}

// A hunt found four servers left idle under a pool_size of 1: they were logging in when the reload came.
TEST_CASE_FIXTURE(PoolFixture, "pool: a reload that shrinks the pool closes the servers that log in beyond it") {
  make_pool(4, PoolMode::Session);
  for (const char* name : {"c1", "c2", "c3", "c4"}) {
    FakeClient& c = client(name);
    c.wanted = params("application_name", name);  // none takes over another's connection
    c.ask(*pool, host.clock);
    pool->withdraw(&c);
  }
  REQUIRE(host.servers.size() == 4);
  budget->limit.store(1);  // the reload's new pool_size
  for (int i = 1; i <= 4; ++i) server(i).log_in();
  CHECK(pool->idle_count() == 1);
  CHECK(budget->used.load() == 1);
  CHECK(server(4).open());  // the last one up is within the size
}

TEST_CASE_FIXTURE(PoolFixture, "pool: transaction pooling SETs the client's parameters on checkout") {
  make_pool(1, PoolMode::Transaction);
  FakeClient& c1 = client("c1");
  c1.wanted = params("application_name", "one");
  c1.ask(*pool, host.clock);
  CHECK(server(1).startup_params().entries().empty());  // plain: each client's values are SET
  server(1).log_in(params("application_name", ""));
  CHECK(pool->login_params().entries() == params("application_name", "").entries());  // for logins without a server
  REQUIRE(server(1).queries.size() == 1);
  CHECK(server(1).queries[0] == "SET \"application_name\" = 'one';");
  CHECK(server(1).state() == ServerState::Internal);
  CHECK(c1.server == nullptr);
  server(1).answer(true);
  CHECK(c1.server == &server(1));

  SUBCASE("a refused value ends the client and closes the server, whose state is unknown") {
    c1.give_back(*pool);
    FakeClient& c2 = client("c2");
    c2.wanted = params("application_name", "two");
    c2.ask(*pool, host.clock);
    server(1).answer(false);
    CHECK(c2.fatal);
    CHECK(c2.failure == Failure::ParameterRejected);
    CHECK(c2.error_state == "22023");
    CHECK_FALSE(server(1).open());
  }
  SUBCASE("a client leaving during the SET: the server goes back to the pool") {
    c1.give_back(*pool);
    FakeClient& c2 = client("c2");
    c2.wanted = params("application_name", "two");
    c2.ask(*pool, host.clock);
    pool->withdraw(&c2);
    server(1).answer(true);
    CHECK(c2.server == nullptr);
    CHECK(server(1).state() == ServerState::Idle);
  }
}

TEST_CASE_FIXTURE(PoolFixture, "pool: a server idle for server_check_delay is checked with an empty query first") {
  make_pool(1, PoolMode::Transaction);
  host.config_timeouts.server_check_delay = 30;
  FakeClient& c1 = client_holding_server("c1");
  c1.give_back(*pool);
  host.clock += 29;
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  CHECK(c2.server == &server(1));  // nothing to SET, idle a short while: at once
  CHECK(server(1).queries.empty());
  c2.give_back(*pool);
  host.clock += 30;
  FakeClient& c3 = client("c3");
  c3.ask(*pool, host.clock);
  CHECK(server(1).queries == std::vector<std::string>{";"});
  CHECK(c3.server == nullptr);
  server(1).answer(true);
  CHECK(c3.server == &server(1));
}

TEST_CASE_FIXTURE(PoolFixture, "pool: transaction pooling resets a server a client changed the session of") {
  make_pool(1, PoolMode::Transaction);
  FakeClient& c1 = client_holding_server("c1");
  server(1).changed_session = true;
  c1.give_back(*pool);
  CHECK(server(1).forgot_session == 1);
  CHECK(server(1).queries == std::vector<std::string>{"DISCARD ALL"});
  server(1).answer(false);  // the reset failed: never reused
  CHECK_FALSE(server(1).open());
  CHECK(budget->used.load() == 0);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: session pooling matches startup parameters, making room if the budget is spent") {
  make_pool(1, PoolMode::Session);
  FakeClient& c1 = client("c1");
  c1.wanted = params("application_name", "one");
  c1.ask(*pool, host.clock);
  server(1).log_in(c1.wanted);  // a startup parameter is reported back: nothing to SET
  REQUIRE(c1.server == &server(1));
  c1.give_back(*pool);
  server(1).answer(true);
  FakeClient& c2 = client("c2");
  c2.wanted = params("application_name", "two");
  c2.ask(*pool, host.clock);
  CHECK_FALSE(server(1).open());  // the idle server of other parameters made room
  REQUIRE(host.servers.size() == 2);
  CHECK(server(2).startup_params().entries() == c2.wanted.entries());
}

TEST_CASE_FIXTURE(PoolFixture, "pool: server_idle_timeout closes the oldest idle servers, down to min_pool_size") {
  make_pool(3, PoolMode::Transaction, /*reserve=*/0, /*min_size=*/1);
  host.config_timeouts.server_idle_timeout = 60;
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client_holding_server("c2");
  FakeClient& c3 = client_holding_server("c3");
  c1.give_back(*pool);
  host.clock += 10;
  c2.give_back(*pool);
  host.clock += 10;
  c3.give_back(*pool);
  host.clock += 45;  // idle 65, 55 and 45 s
  tick();
  CHECK_FALSE(server(1).open());
  CHECK(server(2).open());
  host.clock += 100;
  tick();
  CHECK_FALSE(server(2).open());
  CHECK(server(3).open());  // min_pool_size 1
  CHECK(host.servers.size() == 3);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: min_pool_size servers open on the tick, for no client") {
  make_pool(3, PoolMode::Transaction, 0, /*min_size=*/2);
  tick();
  REQUIRE(host.servers.size() == 2);
  CHECK(server(1).opened_for() == nullptr);
  tick();
  CHECK(host.servers.size() == 2);  // those still connecting count
  server(1).log_in();
  server(2).log_in();
  CHECK(pool->idle_count() == 2);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: server_connect_timeout fails a server stuck logging in") {
  make_pool(1, PoolMode::Session);
  host.config_timeouts.server_connect_timeout = 5;
  FakeClient& c1 = client("c1");
  c1.ask(*pool, host.clock);
  host.clock += 5;
  tick();
  CHECK(server(1).open());
  host.clock += 1;
  tick();
  CHECK_FALSE(server(1).open());
  CHECK(c1.failure == Failure::ServerConnectTimeout);
  CHECK(c1.error_state == "08006");
  CHECK(c1.error_message.find("server_connect_timeout") != std::string::npos);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: a server given back not reusable is closed; its slot serves the next client") {
  make_pool(1, PoolMode::Session);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  server(1).usable = false;  // say, mid-transaction
  c1.give_back(*pool);
  CHECK_FALSE(server(1).open());
  CHECK(server(1).queries.empty());  // no reset for it
  CHECK(budget->used.load() == 0);
  tick();  // the freed slot is noticed on the tick
  REQUIRE(host.servers.size() == 2);
  CHECK(server(2).opened_for() == &c2);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: drain closes idle and connecting servers, sends waiters away, and empties") {
  make_pool(3, PoolMode::Session);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client_holding_server("c2");
  c2.give_back(*pool);
  server(2).answer(true);  // S-2 idle
  FakeClient& c3 = client("c3");
  c3.wanted = params("application_name", "other");  // S-2 does not fit: S-3 opens for it
  c3.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 3);
  pool->drain();
  CHECK(pool->draining());
  CHECK(server(1).open());  // linked: goes back at its client's next transaction boundary
  CHECK_FALSE(server(2).open());
  CHECK_FALSE(server(3).open());
  CHECK(c1.drained == 1);
  CHECK(c3.drained == 1);
  CHECK(pool->waiting_count() == 0);
  CHECK_FALSE(pool->empty());
  c1.give_back(*pool);
  CHECK_FALSE(server(1).open());  // never reused
  CHECK(server(1).queries.empty());
  CHECK(pool->empty());
  CHECK(budget->used.load() == 0);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: release weighs the client's facts and failure (server_fate)") {
  make_pool(2, PoolMode::Transaction);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client_holding_server("c2");
  ServerFacts pinned;
  pinned.session_state = true;  // the client was pinned: DISCARD ALL though the server saw no SET
  pool->release(c1.server, pinned);
  CHECK(server(1).queries == std::vector<std::string>{"DISCARD ALL"});
  CHECK(server(1).forgot_session == 1);
  pool->release(c2.server, {}, Failure::ServerInvalidMessage);  // clean, but the failure closes it
  CHECK_FALSE(server(2).open());
  CHECK(server(2).queries.empty());
}

TEST_CASE_FIXTURE(PoolFixture, "pool: close_all tells the waiting clients why and closes every server") {
  make_pool(1, PoolMode::Session);
  client_holding_server("c1");
  FakeClient& c2 = client("c2");
  c2.ask(*pool, host.clock);
  pool->close_all(Failure::ShuttingDown);
  CHECK(c2.failure == Failure::ShuttingDown);
  CHECK(c2.error_state == pgmux::protocol::sqlstate::kAdminShutdown);
  CHECK(pool->waiting_count() == 0);
  CHECK_FALSE(server(1).open());
  CHECK(budget->used.load() == 0);
}

// A client the pool sends away (query_wait_timeout here) may still have a server logging in for it. That server
// failing later must not call back into the client, which has usually been freed by then (ASan found the
// heap-use-after-free in the integration suite: Pool::on_server_failed on a closed ClientConn).
TEST_CASE_FIXTURE(PoolFixture, "pool: a server opened for a client the pool sent away fails without calling it") {
  make_pool(1, PoolMode::Session);
  host.config_timeouts.query_wait_timeout = 10;
  host.config_timeouts.server_connect_timeout = 1000;
  FakeClient& c1 = client("c1");
  c1.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 1);  // opened for c1, still logging in
  host.clock += 10;
  tick();
  CHECK(c1.failure == Failure::QueryWaitTimeout);
  server(1).refuse_login("28P01", "password authentication failed for user \"app\"");
  CHECK(c1.failure == Failure::QueryWaitTimeout);  // not told a second time
  CHECK(std::count(events.begin(), events.end(), "c1 refused 53300") == 1);
  CHECK(events.size() == 1);
}

TEST_CASE_FIXTURE(PoolFixture, "pool: a refused connect is reported to the prober; other connect failures are not") {
  make_pool(2, PoolMode::Transaction);
  FakeClient& c1 = client("c1");
  FakeClient& c2 = client("c2");
  c1.ask(*pool, host.clock);
  c2.ask(*pool, host.clock);
  server(1).fail_login(FailureReport(Failure::ServerConnectFailed, {"connection timed out"}));
  CHECK(host.refused.empty());
  server(2).fail_login(FailureReport(Failure::ServerConnectRefused, {"connection refused"}));
  CHECK(host.refused == std::vector<std::string>{"b1"});
  CHECK(c2.error_state == "08006");
}

TEST_CASE_FIXTURE(PoolFixture, "pool: a backend's host name at another address retires the servers at the old one") {
  make_pool(3, PoolMode::Transaction);
  FakeClient& c1 = client_holding_server("c1");
  FakeClient& c2 = client_holding_server("c2");
  c2.give_back(*pool);
  REQUIRE(pool->idle_count() == 1);
  const sockaddr_storage before = server(1).address();

  sockaddr_storage moved{};
  REQUIRE(numeric_address("127.0.0.2", 5432, &moved));
  pool->set_address(moved, "127.0.0.2");
  CHECK_FALSE(server(2).open());  // idle at the old address: closed at once
  CHECK(server(1).open());        // busy: its client's transaction goes on there
  c1.give_back(*pool);
  CHECK_FALSE(server(1).open());  // then it is not reused
  CHECK(pool->idle_count() == 0);

  FakeClient& c3 = client("c3");
  c3.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 3);
  CHECK(same_address(server(3).address(), moved));  // opened at the new address
  CHECK_FALSE(same_address(server(3).address(), before));
  server(3).log_in();
  CHECK(c3.server == &server(3));
  c3.give_back(*pool);
  CHECK(server(3).open());
  CHECK(pool->idle_count() == 1);

  // A server still connecting when the address changes logs in at the old one: closed, and the client it was
  // opened for gets one at the new address.
  FakeClient& c4 = client("c4");
  FakeClient& c5 = client("c5");
  c4.ask(*pool, host.clock);  // the idle one
  c5.ask(*pool, host.clock);
  REQUIRE(host.servers.size() == 4);
  sockaddr_storage moved_again{};
  REQUIRE(numeric_address("127.0.0.3", 5432, &moved_again));
  pool->set_address(moved_again, "127.0.0.3");
  server(4).log_in();
  CHECK_FALSE(server(4).open());
  CHECK(c5.server == nullptr);
  REQUIRE(host.servers.size() == 5);
  CHECK(same_address(server(5).address(), moved_again));
  CHECK(server(5).opened_for() == &c5);
  server(5).log_in();
  CHECK(c5.server == &server(5));
}
