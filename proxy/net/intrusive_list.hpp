// Minimal intrusive doubly linked list: connections move between their pool's lists without allocating.
#pragma once
#include <cstddef>

namespace pgmux::proxy {

struct ListNode {
  ListNode* prev = nullptr;
  ListNode* next = nullptr;
  bool linked() const { return next != nullptr; }
};

template <typename T, ListNode T::*Node>
class IntrusiveList {
 public:
  IntrusiveList() { head_.prev = head_.next = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_.next == &head_; }
  size_t size() const { return size_; }

  void push_back(T* item) { insert_before(&head_, &(item->*Node)); }
  void push_front(T* item) { insert_before(head_.next, &(item->*Node)); }
  void remove(T* item) {
    ListNode* n = &(item->*Node);
    if (!n->linked()) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = nullptr;
    --size_;
  }
  T* front() const { return empty() ? nullptr : owner(head_.next); }
  T* back() const { return empty() ? nullptr : owner(head_.prev); }
  T* pop_front() {
    T* item = front();
    if (item) remove(item);
    return item;
  }
  T* next_of(T* item) const {
    ListNode* n = (item->*Node).next;
    return n == &head_ ? nullptr : owner(n);
  }

  // Safe against removal of the visited item.
  template <typename F>
  void for_each(F&& f) {
    for (ListNode* n = head_.next; n != &head_;) {
      ListNode* next = n->next;
      f(owner(n));
      n = next;
    }
  }

 private:
  static T* owner(const ListNode* n) {
    const auto offset = reinterpret_cast<size_t>(&(static_cast<T*>(nullptr)->*Node));
    return reinterpret_cast<T*>(reinterpret_cast<char*>(const_cast<ListNode*>(n)) - offset);
  }
  void insert_before(ListNode* pos, ListNode* n) {
    n->next = pos;
    n->prev = pos->prev;
    pos->prev->next = n;
    pos->prev = n;
    ++size_;
  }
  ListNode head_;
  size_t size_ = 0;
};

}  // namespace pgmux::proxy
