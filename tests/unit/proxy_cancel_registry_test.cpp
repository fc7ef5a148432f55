// The cancel registry: keys are (process id, secret) pairs, so a real server pid given to several clients of
// different backends, or equal to one of pgmux's own numbers, still finds the right client.
#include <doctest/doctest.h>

#include <memory>
#include <set>
#include <vector>

#include "proxy/client/cancel.hpp"

using namespace pgmux::proxy;

namespace {
std::shared_ptr<CancelSlot> slot_with_pid(int32_t target_pid) {
  auto slot = std::make_shared<CancelSlot>();
  CancelTarget target;
  target.process_id = target_pid;
  slot->set(target);
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
  CancelTarget primary;
  primary.process_id = 2;
  slot->set(primary);  // the next request runs on the primary
  REQUIRE(slot->begin_cancel());
  CHECK(slot->release(1));  // the first cancel is still on its way to the standby
  slot->end_cancel(2);
  CHECK_FALSE(slot->release(2));
  slot->end_cancel(1);
  CHECK_FALSE(slot->release(1));
}
