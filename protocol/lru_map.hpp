// Bounded map that evicts its least recently used entry. Used per server connection to remember which
// server-side prepared statements exist there: put() hands back the evicted key so the caller can send a
// Close for it on that server. Header-only and pure.
//
// Each entry is one hash-map node; the recency list is threaded through the nodes themselves (node
// addresses are stable across rehashing), so a key is stored once and put/get/erase are O(1) with one
// allocation per new entry. Not thread-safe (one owner: the server connection's worker).
#pragma once
#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace pgmux::protocol {

// Transparent hash for std::string keys, so lookups by std::string_view do not build a std::string.
struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

template <typename Key, typename Value, typename Hash = std::hash<Key>, typename KeyEqual = std::equal_to<>>
class LruMap {
  struct Slot;
  using Node = std::pair<const Key, Slot>;  // the map's value_type; Slot is complete before Map is named
  struct Slot {
    Value value;
    Node* newer = nullptr;
    Node* older = nullptr;
  };
  using Map = std::unordered_map<Key, Slot, Hash, KeyEqual>;

 public:
  // capacity 0 means unbounded: nothing is ever evicted.
  explicit LruMap(size_t capacity) : capacity_(capacity) {}
  LruMap(const LruMap&) = delete;  // the recency links point into map_'s nodes
  LruMap& operator=(const LruMap&) = delete;
  // Moving hands over the nodes themselves, so the links stay valid; the source is left empty.
  LruMap(LruMap&& other) noexcept
      : map_(std::move(other.map_)),
        newest_(other.newest_),
        oldest_(other.oldest_),
        capacity_(other.capacity_) {
    other.forget_nodes();
  }
  LruMap& operator=(LruMap&& other) noexcept {
    if (this != &other) {
      map_ = std::move(other.map_);
      newest_ = other.newest_;
      oldest_ = other.oldest_;
      capacity_ = other.capacity_;
      other.forget_nodes();
    }
    return *this;
  }

  size_t size() const { return map_.size(); }
  size_t capacity() const { return capacity_; }
  bool empty() const { return map_.empty(); }

  // Looks up and marks as most recently used. nullptr when absent.
  template <typename K>
  Value* get(const K& key) {
    Node* n = find_node(key);
    if (!n) return nullptr;
    move_to_front(n);
    return &n->second.value;
  }

  // Marks as most recently used; false when absent.
  template <typename K>
  bool touch(const K& key) {
    return get(key) != nullptr;
  }

  // Marks as least recently used: the next entry evicted, unless another is demoted after it.
  template <typename K>
  void demote(const K& key) {
    Node* n = find_node(key);
    if (!n || n == oldest_) return;
    unlink(n);
    n->second.newer = oldest_;
    n->second.older = nullptr;
    oldest_->second.older = n;
    oldest_ = n;
  }

  // Looks up without changing the order.
  template <typename K>
  const Value* peek(const K& key) const {
    if (newest_ != nullptr && newest_->first == key) return &newest_->second.value;  // see find_node
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  template <typename K>
  bool contains(const K& key) const {
    return map_.find(key) != map_.end();
  }

  // Inserts or overwrites, making the key most recently used. When a new key pushes the size past the
  // capacity, the least recently used entry is removed and its key returned. (A map that put_keeping let grow
  // past its capacity sheds more than one: use put_keeping there.)
  std::optional<Key> put(Key key, Value value) {
    std::optional<Key> evicted;
    put_keeping(std::move(key), std::move(value), 0, [&](Key old) { evicted = std::move(old); });
    return evicted;
  }

  // put, except that the `keep_newest` most recently used entries (the new one included) are never evicted: the
  // map may hold that many past its capacity. Each evicted key goes to on_evict.
  template <typename OnEvict>
  void put_keeping(Key key, Value value, size_t keep_newest, OnEvict&& on_evict) {
    if (Node* n = find_node(key)) {
      n->second.value = std::move(value);
      move_to_front(n);
      return;
    }
    auto [it, inserted] = map_.emplace(std::move(key), Slot{std::move(value)});
    (void)inserted;
    link_front(&*it);
    const size_t limit = std::max(capacity_, keep_newest);
    while (capacity_ != 0 && map_.size() > limit) on_evict(evict_oldest());
  }

  // Removes the key; false when absent.
  template <typename K>
  bool erase(const K& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    unlink(&*it);
    map_.erase(it);
    return true;
  }

  void clear() {
    map_.clear();
    newest_ = oldest_ = nullptr;
  }

  // Shrinking evicts from the oldest end; each evicted key goes to on_evict (e.g. to queue a Close).
  template <typename OnEvict>
  void set_capacity(size_t capacity, OnEvict&& on_evict) {
    capacity_ = capacity;
    while (capacity_ != 0 && map_.size() > capacity_) on_evict(evict_oldest());
  }

  // The key that the next eviction would remove, without touching it.
  const Key* oldest() const { return oldest_ ? &oldest_->first : nullptr; }
  const Key* newest() const { return newest_ ? &newest_->first : nullptr; }

  // Visits entries from most to least recently used, without changing the order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (const Node* n = newest_; n; n = n->second.older) fn(n->first, n->second.value);
  }

 private:
  void forget_nodes() {
    map_.clear();  // a moved-from map is valid but unspecified: make it empty
    newest_ = oldest_ = nullptr;
  }

  template <typename K>
  Node* find_node(const K& key) {
    // The entry used last is the one most often asked for again (a client runs one statement repeatedly): one
    // comparison instead of hashing the key.
    if (newest_ != nullptr && newest_->first == key) return newest_;
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &*it;
  }

  void link_front(Node* n) {
    n->second.newer = nullptr;
    n->second.older = newest_;
    if (newest_) newest_->second.newer = n;
    newest_ = n;
    if (!oldest_) oldest_ = n;
  }

  void unlink(Node* n) {
    Slot& s = n->second;
    if (s.newer) s.newer->second.older = s.older; else newest_ = s.older;
    if (s.older) s.older->second.newer = s.newer; else oldest_ = s.newer;
    s.newer = s.older = nullptr;
  }

  void move_to_front(Node* n) {
    if (n == newest_) return;
    unlink(n);
    link_front(n);
  }

  Key evict_oldest() {
    Node* victim = oldest_;
    unlink(victim);
    auto handle = map_.extract(victim->first);  // the node handle lets the key be moved out, not copied
    return std::move(handle.key());
  }

  Map map_;
  Node* newest_ = nullptr;
  Node* oldest_ = nullptr;
  size_t capacity_;
};

}  // namespace pgmux::protocol
