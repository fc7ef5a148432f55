// The cancel registry: keys are (process id, secret) pairs, so a real server pid given to several clients of
// different backends, or equal to one of pgmux's own numbers, still finds the right client.
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <memory>
#include <set>
#include <vector>

#include "proxy/client/cancel.hpp"

using namespace pgmux::proxy;

namespace {
// A server connection's target; server ids stand for the servers themselves (ServerConn::id).
CancelTarget server(uint64_t server_id, int32_t pid, const char* ip = "127.0.0.1") {
  CancelTarget target;
  sockaddr_storage address{};
  auto& v4 = reinterpret_cast<sockaddr_in&>(address);
  v4.sin_family = AF_INET;
  v4.sin_port = htons(5432);
  inet_pton(AF_INET, ip, &v4.sin_addr);
  target.set_address(address);
  target.process_id = pid;
  target.server_id = server_id;
  return target;
}

std::shared_ptr<CancelSlot> slot_with_pid(int32_t target_pid) {
  auto slot = std::make_shared<CancelSlot>();
  slot->set(server(static_cast<uint64_t>(target_pid), target_pid));
  return slot;
}
}  // namespace

TEST_CASE("pgmux's own process ids: positive, distinct, found only with their secret") {
  CancelRegistry registry;
  std::set<int32_t> pids;
  std::vector<CancelRegistry::Key> keys;
  for (int i = 0; i < 100; ++i) {
    keys.push_back(registry.add(slot_with_pid(i)));
    CHECK(keys.back().process_id > 0);
    pids.insert(keys.back().process_id);
  }
  CHECK(pids.size() == 100);
  auto found = registry.find(keys[7].process_id, keys[7].secret_key);
  REQUIRE(found);
  CHECK(found->get()->process_id == 7);
  CHECK_FALSE(registry.find(keys[7].process_id, keys[7].secret_key + 1));
}

TEST_CASE("a real server pid: kept as given, shared by several clients without mixing them up") {
  CancelRegistry registry;
  // Two backends (primary and a standby on other hosts) may have the same pid; so may pgmux's own counter.
  const CancelRegistry::Key a = registry.add(slot_with_pid(1), 4242);
  const CancelRegistry::Key b = registry.add(slot_with_pid(2), 4242);
  const CancelRegistry::Key own = registry.add(slot_with_pid(3));
  const CancelRegistry::Key same_as_own = registry.add(slot_with_pid(4), own.process_id);
  CHECK(a.process_id == 4242);
  CHECK(b.process_id == 4242);
  CHECK(a.secret_key != b.secret_key);
  CHECK(same_as_own.process_id == own.process_id);
  CHECK(registry.size() == 4);
  CHECK(registry.find(4242, a.secret_key)->get()->process_id == 1);
  CHECK(registry.find(4242, b.secret_key)->get()->process_id == 2);
  CHECK(registry.find(own.process_id, own.secret_key)->get()->process_id == 3);
  CHECK(registry.find(own.process_id, same_as_own.secret_key)->get()->process_id == 4);

  // Removing one client's key leaves the other's with the same pid.
  registry.remove(a);
  CHECK_FALSE(registry.find(4242, a.secret_key));
  REQUIRE(registry.find(4242, b.secret_key));
  CHECK(registry.size() == 3);
}

// In these tests a server's id is its pid unless the test gives both.
TEST_CASE("a cancel on its way keeps its server from the next client until the server has closed it") {
  auto slot = slot_with_pid(7);
  const std::optional<CancelTarget> sent = slot->begin_cancel();
  REQUIRE(sent);
  CHECK(sent->process_id == 7);
  CHECK_FALSE(slot->release(8));  // another server of the client: no cancel went there
  CHECK(slot->release(7));        // on its way: this server must not serve anyone else
  CHECK_FALSE(slot->begin_cancel());  // let go of: no later cancel takes it as a target
  slot->end_cancel(7);
  CHECK_FALSE(slot->release(7));

  auto done = slot_with_pid(9);
  REQUIRE(done->begin_cancel());
  done->end_cancel(9);  // the server closed the cancel's connection: the backend was signalled already
  CHECK_FALSE(done->release(9));
}

TEST_CASE("cancels on their way to two servers of the client: each server is held back until its own is done") {
  auto slot = slot_with_pid(1);  // the standby, say
  REQUIRE(slot->begin_cancel());
  slot->set(server(2, 2));  // the next request runs on the primary
  REQUIRE(slot->begin_cancel());
  CHECK(slot->release(1));  // the first cancel is still on its way to the standby
  slot->end_cancel(2);
  CHECK_FALSE(slot->release(2));
  slot->end_cancel(1);
  CHECK_FALSE(slot->release(1));
}

// The primary and a standby are other hosts: their backends may have the same pid. A cancel on its way to one
// holds back that one only, and each is held back until its own cancel is done, whichever ends first.
TEST_CASE("two servers of the client whose backends have the same pid on different hosts") {
  const CancelTarget standby = server(11, 4242, "127.0.0.2");
  const CancelTarget primary = server(12, 4242, "127.0.0.1");
  auto to_standby = std::make_shared<CancelSlot>();
  to_standby->set(standby);
  REQUIRE(to_standby->begin_cancel());
  to_standby->set(primary);
  CHECK_FALSE(to_standby->release(primary.server_id));  // no cancel went to the primary: it may serve others

  auto slot = std::make_shared<CancelSlot>();
  slot->set(standby);
  REQUIRE(slot->begin_cancel());
  slot->set(primary);
  REQUIRE(slot->begin_cancel());
  slot->end_cancel(standby.server_id);  // the standby's cancel is done first
  CHECK_FALSE(slot->release(standby.server_id));
  CHECK(slot->release(primary.server_id));  // the primary's is still on its way
  slot->end_cancel(primary.server_id);
  CHECK_FALSE(slot->release(primary.server_id));
}

// The slot forgets a server's count once the client lets go of it (the server is closed): a cancel to it that
// ends later lowers no other server's count, and its entry serves the client's next server.
TEST_CASE("a cancel to a server the client let go of ends after the client took another") {
  auto slot = slot_with_pid(1);
  REQUIRE(slot->begin_cancel());
  CHECK(slot->release(1));  // closed, not given to anyone
  slot->set(server(2, 2));
  REQUIRE(slot->begin_cancel());
  slot->set(server(3, 3));
  REQUIRE(slot->begin_cancel());  // the entry server 1 had
  slot->end_cancel(1);            // the first cancel ends only now
  CHECK(slot->release(3));
  CHECK(slot->release(2));
}

// A client may send cancel requests as fast as it likes: a count that cannot go higher must not let the server
// go while one of them is still on its way.
TEST_CASE("a cancel that could not be counted is not sent") {
  auto slot = slot_with_pid(5);
  int sent = 0;
  for (int i = 0; i <= UINT16_MAX; ++i) sent += slot->begin_cancel() ? 1 : 0;
  CHECK(sent == UINT16_MAX);
  for (int i = 1; i < sent; ++i) slot->end_cancel(5);
  CHECK(slot->release(5));  // one is still on its way
  slot->set(server(6, 6));
  for (int i = 0; i < 3; ++i) REQUIRE(slot->begin_cancel());
  for (int i = 0; i < 3; ++i) slot->end_cancel(6);
  CHECK_FALSE(slot->release(6));
}
