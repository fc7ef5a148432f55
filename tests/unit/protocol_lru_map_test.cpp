// LruMap: recency order, eviction returns the least recently used key, get/touch refresh, erase, moves.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "protocol/lru_map.hpp"

using namespace pgmux::protocol;
using namespace std::string_view_literals;

namespace {
using StmtMap = LruMap<std::string, int, TransparentStringHash>;

// Keys from most to least recently used.
std::vector<std::string> order(const StmtMap& m) {
  std::vector<std::string> keys;
  m.for_each([&](const std::string& k, int) { keys.push_back(k); });
  return keys;
}
}  // namespace

TEST_CASE("Insertion order and eviction of the least recently used") {
  StmtMap m(3);
  CHECK(m.capacity() == 3);
  CHECK(m.empty());
  CHECK_FALSE(m.put("a", 1));
  CHECK_FALSE(m.put("b", 2));
  CHECK_FALSE(m.put("c", 3));
  CHECK(m.size() == 3);
  CHECK(order(m) == std::vector<std::string>{"c", "b", "a"});
  CHECK(*m.oldest() == "a");
  CHECK(*m.newest() == "c");

  auto evicted = m.put("d", 4);
  REQUIRE(evicted);
  CHECK(*evicted == "a");
  CHECK(m.size() == 3);
  CHECK_FALSE(m.contains("a"sv));
  CHECK(order(m) == std::vector<std::string>{"d", "c", "b"});
}

TEST_CASE("get and touch make an entry most recently used; peek and contains do not") {
  StmtMap m(3);
  m.put("a", 1);
  m.put("b", 2);
  m.put("c", 3);

  int* v = m.get("a"sv);
  REQUIRE(v);
  CHECK(*v == 1);
  *v = 10;
  CHECK(order(m) == std::vector<std::string>{"a", "c", "b"});

  CHECK(m.touch(std::string("b")));
  CHECK(order(m) == std::vector<std::string>{"b", "a", "c"});
  CHECK_FALSE(m.touch("zz"sv));
  CHECK(m.get("zz"sv) == nullptr);

  REQUIRE(m.peek("c"sv));
  CHECK(*m.peek("c"sv) == 3);
  CHECK(m.contains("c"sv));
  CHECK(order(m) == std::vector<std::string>{"b", "a", "c"});

  auto evicted = m.put("d", 4);
  REQUIRE(evicted);
  CHECK(*evicted == "c");
  CHECK(*m.peek("a"sv) == 10);
}

TEST_CASE("demote makes an entry the least recently used, from any position") {
  StmtMap m(3);
  m.put("a", 1);
  m.put("b", 2);
  m.put("c", 3);
  m.demote("c"sv);  // the newest
  CHECK(order(m) == std::vector<std::string>{"b", "a", "c"});
  CHECK(*m.newest() == "b");
  CHECK(*m.oldest() == "c");
  m.demote("a"sv);  // from the middle
  CHECK(order(m) == std::vector<std::string>{"b", "c", "a"});
  m.demote("a"sv);  // already the oldest
  m.demote("zz"sv);  // absent
  CHECK(order(m) == std::vector<std::string>{"b", "c", "a"});
  auto evicted = m.put("d", 4);
  REQUIRE(evicted);
  CHECK(*evicted == "a");
  CHECK(order(m) == std::vector<std::string>{"d", "b", "c"});
}

TEST_CASE("put on an existing key overwrites, refreshes and never evicts") {
  StmtMap m(2);
  m.put("a", 1);
  m.put("b", 2);
  CHECK_FALSE(m.put("a", 5));
  CHECK(m.size() == 2);
  CHECK(*m.peek("a"sv) == 5);
  CHECK(order(m) == std::vector<std::string>{"a", "b"});
  auto evicted = m.put("c", 3);
  REQUIRE(evicted);
  CHECK(*evicted == "b");
}

TEST_CASE("put_keeping never evicts the newest entries it is told to keep, and sheds the excess later") {
  LruMap<std::string, int> m(2);
  std::vector<std::string> evicted;
  const auto note = [&](std::string key) { evicted.push_back(std::move(key)); };
  m.put_keeping("a", 1, 3, note);
  m.put_keeping("b", 2, 3, note);
  m.put_keeping("c", 3, 3, note);  // three kept past a capacity of two
  CHECK(evicted.empty());
  CHECK(m.size() == 3);
  m.put_keeping("d", 4, 3, note);  // the oldest goes: three newest kept
  CHECK(evicted == std::vector<std::string>{"a"});
  m.put_keeping("e", 5, 0, note);  // back to the capacity: two go, oldest first
  CHECK(evicted == std::vector<std::string>{"a", "b", "c"});
  CHECK(m.size() == 2);
  CHECK(*m.newest() == "e");
  CHECK(*m.oldest() == "d");
}

TEST_CASE("erase unlinks from every position") {
  StmtMap m(4);
  for (const char* k : {"a", "b", "c", "d"}) m.put(k, 0);
  CHECK(m.erase("b"sv));   // middle
  CHECK(order(m) == std::vector<std::string>{"d", "c", "a"});
  CHECK(m.erase("d"sv));   // newest
  CHECK(order(m) == std::vector<std::string>{"c", "a"});
  CHECK(m.erase("a"sv));   // oldest
  CHECK(order(m) == std::vector<std::string>{"c"});
  CHECK(*m.oldest() == "c");
  CHECK_FALSE(m.erase("a"sv));
  CHECK(m.erase("c"sv));
  CHECK(m.empty());
  CHECK(m.oldest() == nullptr);
  CHECK(m.newest() == nullptr);
  // Still usable after emptying; erased keys free their room.
  m.put("x", 1);
  m.put("y", 2);
  CHECK(order(m) == std::vector<std::string>{"y", "x"});
}

TEST_CASE("Capacity 1, unbounded capacity 0, and shrinking") {
  StmtMap one(1);
  CHECK_FALSE(one.put("a", 1));
  CHECK(*one.put("b", 2) == "a");
  CHECK(*one.put("c", 3) == "b");
  CHECK(order(one) == std::vector<std::string>{"c"});

  StmtMap unbounded(0);
  for (int i = 0; i < 1000; ++i) CHECK_FALSE(unbounded.put("k" + std::to_string(i), i));
  CHECK(unbounded.size() == 1000);

  std::vector<std::string> evicted;
  unbounded.set_capacity(2, [&](std::string k) { evicted.push_back(std::move(k)); });
  CHECK(unbounded.size() == 2);
  CHECK(evicted.size() == 998);
  CHECK(evicted.front() == "k0");
  CHECK(evicted.back() == "k997");
  CHECK(order(unbounded) == std::vector<std::string>{"k999", "k998"});
}

TEST_CASE("Order survives rehashing and moves; the moved-from map is empty") {
  StmtMap m(100);
  for (int i = 0; i < 100; ++i) m.put("s" + std::to_string(i), i);  // forces several rehashes
  m.touch("s0"sv);
  StmtMap moved(std::move(m));
  CHECK(moved.size() == 100);
  CHECK(*moved.newest() == "s0");
  CHECK(*moved.put("t", 0) == "s1");
  CHECK(m.empty());  // NOLINT(bugprone-use-after-move): documented state
  CHECK(m.oldest() == nullptr);

  StmtMap assigned(5);
  assigned.put("z", 1);
  assigned = std::move(moved);
  CHECK(assigned.size() == 100);
  CHECK(assigned.capacity() == 100);
  CHECK_FALSE(assigned.contains("z"sv));
  CHECK(*assigned.oldest() == "s2");

  assigned.clear();
  CHECK(assigned.empty());
  CHECK_FALSE(assigned.put("a", 1));
  CHECK(*assigned.newest() == "a");
}

TEST_CASE("Random operations agree with a simple reference model") {
  // Reference: a vector of keys, most recent first.
  StmtMap m(8);
  std::vector<std::string> model;
  uint32_t seed = 12345;
  auto next = [&] { seed = seed * 1103515245u + 12345u; return (seed >> 16) & 0x7fff; };
  for (int i = 0; i < 20000; ++i) {
    const std::string key = "k" + std::to_string(next() % 16);
    auto pos = std::find(model.begin(), model.end(), key);
    switch (next() % 3) {
      case 0: {
        auto evicted = m.put(key, i);
        if (pos != model.end()) {
          model.erase(pos);
          model.insert(model.begin(), key);
          CHECK_FALSE(evicted);
        } else {
          model.insert(model.begin(), key);
          if (model.size() > 8) {
            REQUIRE(evicted);
            CHECK(*evicted == model.back());
            model.pop_back();
          } else {
            CHECK_FALSE(evicted);
          }
        }
        break;
      }
      case 1:
        CHECK(m.touch(std::string_view(key)) == (pos != model.end()));
        if (pos != model.end()) {
          model.erase(pos);
          model.insert(model.begin(), key);
        }
        break;
      default:
        CHECK(m.erase(std::string_view(key)) == (pos != model.end()));
        if (pos != model.end()) model.erase(pos);
        break;
    }
    REQUIRE(order(m) == model);
  }
}
