#include "routing/classifier.hpp"

#include <algorithm>

#include "routing/begin_syntax.hpp"
#include "routing/classifier_lexical.hpp"
#include "routing/classifier_rules.hpp"
#include "routing/parse_classifier.hpp"

namespace pgmux::routing {

const char* to_string(StatementKind k) {
  switch (k) {
    case StatementKind::Read: return "read";
    case StatementKind::Write: return "write";
    case StatementKind::Session: return "session";
    case StatementKind::TxBegin: return "tx_begin";
    case StatementKind::TxEnd: return "tx_end";
    case StatementKind::Empty: return "empty";
  }
  return "unknown";
}

Classifier::Classifier(std::vector<std::string> write_functions, size_t cache_capacity,
                       std::shared_ptr<LearnedWrites> learned)
    : write_functions_(std::move(write_functions)), cache_(cache_capacity), learned_(std::move(learned)) {
  // Configured names compare like the parser's folded identifiers: lowercase, without a schema (calls are
  // matched by their last name part).
  for (std::string& f : write_functions_) {
    if (const size_t dot = f.rfind('.'); dot != std::string::npos) f.erase(0, dot + 1);
    std::transform(f.begin(), f.end(), f.begin(), [](unsigned char c) {
      return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
  }
  std::sort(write_functions_.begin(), write_functions_.end());
  write_functions_.erase(std::unique(write_functions_.begin(), write_functions_.end()), write_functions_.end());
}

bool Classifier::is_write_function(std::string_view name, bool* session_lock) const {
  if (is_builtin_write_function(name, session_lock)) return true;
  return std::binary_search(write_functions_.begin(), write_functions_.end(), name,
                            [](std::string_view a, std::string_view b) { return a < b; });
}

namespace {

bool is_read(const Classification& c) { return c.kind == StatementKind::Read; }

// True when one of the '\0'-terminated names in `names` is in the set `in`.
template <class InSet>
bool any_name(std::string_view names, InSet&& in) {
  while (!names.empty()) {
    const size_t end = names.find('\0');
    if (in(names.substr(0, end))) return true;
    names.remove_prefix(end + 1);
  }
  return false;
}

// A read (of any statement of the string) that calls a volatile function or reads a view over one is a write:
// combining the statements again with that one a Write gives a Write. One that reads an unlogged table, which a
// standby refuses to plan, stays a read that goes to the primary (reads_unlogged). A call of a function that may
// change the session unseen, in any statement, makes the session unknown (like DO) and sends a read to the
// primary.
void apply_catalog(const ParsedStatements& parsed, const FunctionCatalog& catalog, Classification& c) {
  const char* reason = nullptr;
  const bool session_call = any_name(parsed.calls, [&](std::string_view n) { return catalog.session_function(n); });
  if (session_call) c.effects.add(SessionEffect::Opaque);
  if (session_call && is_read(c)) {
    reason = "function that may change session state";
  } else if (any_name(parsed.read_calls, [&](std::string_view n) { return catalog.volatile_function(n); })) {
    reason = "volatile function";
  } else if (any_name(parsed.read_relations, [&](std::string_view n) { return catalog.volatile_view(n); })) {
    reason = "view over a volatile function";
  }
  if (reason == nullptr) {
    // Only the primary has the rows, and a standby refuses even to plan a read of them.
    c.reads_unlogged =
        any_name(parsed.planned_relations, [&](std::string_view n) { return catalog.unlogged_relation(n); });
    return;
  }
  c.kind = StatementKind::Write;
  c.reason = reason;
  c.write_function = true;
}

}  // namespace

Classification Classifier::classify(std::string_view sql, const CatalogState& catalog) {
  const uint64_t stamp = catalog.stamp();
  const std::optional<Shape> shape = literal_shape(sql, shape_buffer_);
  const LexicalResult* cached = shape ? shapes_.find(*shape, stamp) : nullptr;
  if (cached == nullptr) {
    // A hit constructs no LexicalResult; a miss moves the lexer's into this member (its buffers are the lexer's).
    lexical_scratch_ = classify_lexically(sql, *this, catalog.catalog);
    Classification& fresh = lexical_scratch_.classification;
    if (fresh.kind == StatementKind::TxBegin && !fresh.multi_statement) fresh.held_tag = well_formed_begin_tag(sql);
    if (fresh.kind == StatementKind::Session && !fresh.multi_statement) {
      fresh.held_tag = well_formed_set_transaction_tag(sql);
    }
    if (shape) shapes_.store(*shape, stamp, lexical_scratch_);
  }
  // The key of the parse cache and of the learned writes: the parse tree's class and names do not depend on
  // numbers.
  const std::string_view key = shape ? shape->text : sql;
  const LexicalResult& lexical = cached != nullptr ? *cached : lexical_scratch_;
  Classification c = lexical.classification;
  if (lexical.needs_parser) {
    c = classify_with_parser(sql, key, catalog.catalog);
    c.primary_hint = lexical.classification.primary_hint;  // comments never reach the parse tree
    c.unreadable = lexical.classification.unreadable;      // the parser reads strings the standard way
    if (c.kind == StatementKind::TxBegin || c.kind == StatementKind::Session) {
      c.held_tag = lexical.classification.held_tag;
    }
  }
  if (c.pin_reason == PinReason::None) c.pin_reason = lexical.temp_schema_pin;
  if (is_read(c) && learned_) {
    const LearnedWrites::Lesson lesson = learned_->lesson_for(key);
    if (lesson == LearnedWrites::Lesson::Write) {
      c.kind = StatementKind::Write;
      c.reason = "rejected as a write by a standby";
    } else if (lesson == LearnedWrites::Lesson::PrimaryRead) {
      c.reads_unlogged = true;
    }
  }
  if (catalog.refreshing && is_read(c)) {
    // What the statement calls may have changed since the catalog was loaded: the primary answers meanwhile.
    c.kind = StatementKind::Write;
    c.reason = "function catalog reloading";
  }
  c.catalog_stamp = catalog.stamp();
  return c;
}

Classification Classifier::classify_with_parser(std::string_view sql, std::string_view key,
                                                const FunctionCatalog* catalog) {
  const ParsedStatements* parsed = cache_.find(key);
  if (parsed != nullptr) {
    ++cache_hits_;
  } else {
    ++parser_calls_;
    parsed = &cache_.insert(key, parse_statements(sql, *this));
  }
  Classification c = parsed->classification;
  if (catalog != nullptr) apply_catalog(*parsed, *catalog, c);
  return c;
}

void Classifier::learn(std::string_view sql, LearnedWrites::Lesson lesson) {
  if (!learned_) learned_ = std::make_shared<LearnedWrites>();
  // By shape, as classify() looks it up: the same call with another number writes just the same.
  std::string buffer;
  const std::optional<Shape> shape = literal_shape(sql, buffer);
  learned_->add(shape ? shape->text : sql, lesson);
}

std::string Classifier::reset_parameter(std::string_view statement) const {
  return reset_parameter_of(statement, *this);
}

size_t Classifier::cache_hits() const { return cache_hits_; }
size_t Classifier::parser_calls() const { return parser_calls_; }

Classification classify_function_call(uint32_t function_oid) {
  // PostgreSQL's built-in OIDs of the large-object functions.
  static constexpr uint32_t kLargeObjectFunctions[] = {715,  764,  765,  767,  952,  953,  954,  955,  956,  957,
                                                       958,  964,  1004, 3170, 3171, 3172, 3457, 3458, 3459, 3460};
  Classification c;
  c.kind = StatementKind::Write;
  c.reason = "function call";
  if (std::find(std::begin(kLargeObjectFunctions), std::end(kLargeObjectFunctions), function_oid) ==
      std::end(kLargeObjectFunctions)) {
    c.pin_reason = PinReason::UnknownSessionState;
    c.effects.add(SessionEffect::Opaque);
  }
  return c;
}

}  // namespace pgmux::routing
