// Statement texts that differ only in their numeric literals classify alike (no rule of the classifier looks at a
// number's value), so the lexical classification is cached by the text's "shape": the text with every numeric
// literal's digits replaced by '#'. A client that inlines its integers (pgbench -M simple, an ORM without bind
// parameters) sends a new text each time but few shapes; one pass over the text replaces the lexer's several.
//
// Digits count as a literal where they do not continue a word (t1, $tag1$, x_2 stay) and are not inside a quoted
// identifier ("view 1" names a relation). Quoted identifiers are told apart only when nothing in the text can hide
// a '"' (a string, a comment, a dollar quote); a text with both has no shape and is classified afresh each time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::routing {

// A text's shape, and a hash of it.
struct Shape {
  std::string_view text;  // in the buffer literal_shape was given: valid until that buffer's next use
  uint64_t hash = 0;
};

// The shape of `sql`, written into `buffer` (which only grows: no allocation and no zero-fill once it has grown);
// nullopt when the text has none (too long, or quoted identifiers next to text that could hide a quote).
std::optional<Shape> literal_shape(std::string_view sql, std::string& buffer);

// A direct-mapped cache of lexical results (Value) by shape and catalog stamp (the catalog decides which calls
// and relations make a read a write). Each worker's Classifier owns one; nothing is shared. A template, like
// StatementCache, so classifier.hpp can hold one by value.
template <class Value>
class ShapeCache {
 public:
  // The cached value for `shape` (made by literal_shape) under `stamp`, or nullptr.
  const Value* find(const Shape& shape, uint64_t stamp) {
    const Slot& slot = slots_[shape.hash & (kSlots - 1)];
    if (!slot.used || slot.hash != shape.hash || slot.stamp != stamp || slot.key != shape.text) return nullptr;
    ++hits_;
    return &slot.value;
  }
  void store(const Shape& shape, uint64_t stamp, const Value& value) {
    if (shape.text.size() > kMaxKey) return;
    Slot& slot = slots_[shape.hash & (kSlots - 1)];
    slot.key.assign(shape.text);  // reuses the slot's buffer once it is large enough
    slot.hash = shape.hash;
    slot.stamp = stamp;
    slot.used = true;
    slot.value = value;
  }
  size_t hits() const { return hits_; }

 private:
  static constexpr size_t kSlots = 1024;   // a power of two
  static constexpr size_t kMaxKey = 2048;  // longer shapes are not kept: few repeat, and each slot keeps its key
  struct Slot {
    std::string key;
    uint64_t hash = 0;
    uint64_t stamp = 0;
    bool used = false;
    Value value;
  };
  std::vector<Slot> slots_ = std::vector<Slot>(kSlots);
  size_t hits_ = 0;
};

}  // namespace pgmux::routing
