#include "routing/classifier.hpp"

#include <algorithm>

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

void Classification::add_facts(const Classification& other) {
  primary_hint = primary_hint || other.primary_hint;
  if (pin_reason == PinReason::None) pin_reason = other.pin_reason;
  effects.add(other.effects);
  write_function = write_function || other.write_function;
}

Classifier::Classifier(std::vector<std::string> write_functions, size_t cache_capacity)
    : write_functions_(std::move(write_functions)), cache_(cache_capacity) {
  // Configured names compare like the parser's folded identifiers: lowercase.
  for (std::string& f : write_functions_) {
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

Classification Classifier::classify(std::string_view sql) {
  const LexicalResult lexical = classify_lexically(sql, *this);
  if (!lexical.needs_parser) return lexical.classification;
  Classification c = classify_with_parser(sql);
  c.primary_hint = lexical.classification.primary_hint;  // comments never reach the parse tree
  return c;
}

Classification Classifier::classify_with_parser(std::string_view sql) {
  if (const Classification* cached = cache_.find(sql)) {
    ++cache_hits_;
    return *cached;
  }
  ++parser_calls_;
  const Classification c = classify_parsed(sql, *this);
  cache_.insert(sql, c);
  return c;
}

size_t Classifier::cache_hits() const { return cache_hits_; }
size_t Classifier::parser_calls() const { return parser_calls_; }

}  // namespace pgmux::routing
