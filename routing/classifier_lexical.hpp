// The fast path: classifies statements from their tokens alone, without allocating. It settles the
// statements whose kind shows in their keywords and hands the rest (CTEs, FOR UPDATE, INTO, calls of
// write or volatile functions, reads of views over volatile functions, EXPLAIN ANALYZE, COPY (query)) to the
// parser.
#pragma once
#include <string>
#include <string_view>

#include "routing/classifier.hpp"

namespace pgmux::routing {

// catalog: the database's volatile functions and views; null when none is loaded.
LexicalResult classify_lexically(std::string_view sql, const Classifier& classifier, const FunctionCatalog* catalog);

// Classifier::reset_parameter.
std::string reset_parameter_of(std::string_view statement, const Classifier& classifier);

}  // namespace pgmux::routing
