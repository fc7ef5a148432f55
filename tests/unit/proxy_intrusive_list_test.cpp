#include <doctest/doctest.h>

#include "proxy/net/intrusive_list.hpp"

namespace {
struct Item {
  int value = 0;
  pgmux::proxy::ListNode node;
};
using List = pgmux::proxy::IntrusiveList<Item, &Item::node>;
}  // namespace

TEST_CASE("intrusive list: push, remove, order, removal during iteration") {
  Item a{1, {}}, b{2, {}}, c{3, {}};
  List list;
  CHECK(list.empty());
  list.push_back(&a);
  list.push_back(&b);
  list.push_front(&c);
  CHECK(list.size() == 3);
  CHECK(list.front() == &c);
  CHECK(list.back() == &b);
  CHECK(list.next_of(&c) == &a);
  CHECK(list.next_of(&b) == nullptr);

  list.remove(&a);
  CHECK_FALSE(a.node.linked());
  list.remove(&a);  // removing twice is harmless
  CHECK(list.size() == 2);

  int sum = 0;
  list.for_each([&](Item* item) {
    sum += item->value;
    list.remove(item);
  });
  CHECK(sum == 5);
  CHECK(list.empty());
  CHECK(list.pop_front() == nullptr);
}
