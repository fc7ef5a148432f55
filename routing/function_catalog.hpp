// What one database's catalog says about the functions and relations a statement may use: the names whose call
// may change data or depend on one server's state (VOLATILE in pg_proc, less a few built-ins that behave alike
// on a standby), the views whose definition calls one, and the relations only the primary can read (unlogged
// tables, and the views and parents that read them). Built by the control loop from the primary's catalog;
// immutable once built, so every worker's classifier reads it without a lock.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace pgmux::routing {

// A set of names looked up by string_view without building a string (transparent hash).
class NameSet {
 public:
  NameSet() = default;
  explicit NameSet(std::vector<std::string> names);

  bool contains(std::string_view name) const;
  // False when no member has this length and first byte: a cheap test before folding an identifier's case.
  bool may_contain(size_t length, char first) const {
    const size_t bit = filter_bit(length, first);
    return (filter_[bit / 64] & (uint64_t{1} << (bit % 64))) != 0;
  }
  size_t size() const { return names_.size(); }
  bool empty() const { return names_.empty(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_set<std::string, Hash, std::equal_to<>> names_;
  // One bit per (length, first byte) class present: most identifiers miss without hashing.
  std::array<uint64_t, 4> filter_{};
  static size_t filter_bit(size_t length, char first) {
    return (length * 31 + static_cast<unsigned char>(first)) % 256;
  }
};

class FunctionCatalog {
 public:
  FunctionCatalog() = default;
  // Names as PostgreSQL stores them (proname, relname): case-sensitive, unqualified. generation tells
  // snapshots apart (a statement's stored class is redone when it was made with another one).
  FunctionCatalog(std::vector<std::string> volatile_functions, std::vector<std::string> volatile_views,
                  uint64_t generation, std::vector<std::string> session_functions = {},
                  std::vector<std::string> unlogged_relations = {});

  // A function of this name in any schema, with any arguments, is volatile: calling the name may write.
  bool volatile_function(std::string_view name) const { return functions_.contains(name); }
  // A view of this name in any schema reads a volatile function (directly, through an operator or another view).
  bool volatile_view(std::string_view name) const { return views_.contains(name); }
  // A relation of this name in any schema has no rows on a standby, which refuses to plan a read of it (0A000):
  // an unlogged table or sequence, or a view or an inheritance / partitioning parent that reads one.
  bool unlogged_relation(std::string_view name) const { return unlogged_.contains(name); }
  // A function of this name in any schema may change session state from inside (its source runs set_config,
  // SET, RESET or DISCARD, or calls such a function): a call is like a DO block, what it changed is unknown.
  bool session_function(std::string_view name) const { return session_functions_.contains(name); }
  // Before the token is read as a name: false when no listed relation (volatile view or unlogged relation) can
  // match it (an unquoted word folds to lowercase, up to 63 bytes; a quoted one is taken as written).
  bool may_be_listed_relation(bool unquoted_word, std::string_view token) const {
    if (unquoted_word) {
      const char first = token[0] >= 'A' && token[0] <= 'Z' ? static_cast<char>(token[0] | 0x20) : token[0];
      const size_t length = token.size() < 63 ? token.size() : 63;
      return views_.may_contain(length, first) || unlogged_.may_contain(length, first);
    }
    return token.size() >= 3 &&
           (views_.may_contain(token.size() - 2, token[1]) || unlogged_.may_contain(token.size() - 2, token[1]));
  }
  uint64_t generation() const { return generation_; }
  size_t function_count() const { return functions_.size(); }
  size_t view_count() const { return views_.size(); }
  size_t unlogged_count() const { return unlogged_.size(); }
  size_t session_function_count() const { return session_functions_.size(); }

 private:
  NameSet functions_;
  NameSet views_;
  NameSet session_functions_;
  NameSet unlogged_;
  uint64_t generation_ = 0;
};

// Where a classification stands with respect to the catalog of the client's database.
struct CatalogState {
  const FunctionCatalog* catalog = nullptr;  // null: none loaded (the built-in list and write_functions only)
  // DDL that may change functions or views committed through pgmux and the catalog has not been reloaded
  // since (or the first load is still running): reads go to the primary until it has.
  bool refreshing = false;

  // Which catalog a class was made with (Classification::catalog_stamp): a class stored by an earlier request
  // is made again when the stamp differs. 0 without a catalog; never equal to a real one while refreshing.
  uint64_t stamp() const {
    if (refreshing) return kRefreshingStamp;
    return catalog != nullptr ? catalog->generation() : 0;
  }
  static constexpr uint64_t kRefreshingStamp = ~uint64_t{0};
};

// The catalog query, for PostgreSQL 12 and later: rows of (kind, name), kind 'f' for a volatile function,
// 'v' for a view over one, 's' for a function that may change session state (session_function) and 'u' for a
// relation only the primary can read (unlogged_relation). Built-in volatile functions that behave alike on a
// standby are left out (random, clock_timestamp, pg_sleep, ...). A view's definition is searched for the functions
// it calls (operators, aggregates and window functions included) and the views it reads, because PostgreSQL
// records no dependency on built-in functions.
const char* function_catalog_query();

// Collects the rows of function_catalog_query() and builds the catalog; unknown kinds are ignored.
class FunctionCatalogBuilder {
 public:
  void add_row(std::string_view kind, std::string_view name);
  FunctionCatalog build(uint64_t generation) &&;

 private:
  std::vector<std::string> functions_;
  std::vector<std::string> views_;
  std::vector<std::string> session_functions_;
  std::vector<std::string> unlogged_;
};

}  // namespace pgmux::routing
