// The slow path: PostgreSQL's own parser (libpg_query) builds the parse tree and we walk it. Used only
// when the lexical pass can't settle a statement; the caller caches the answer by text.
#pragma once
#include <string_view>

#include "routing/classifier.hpp"

namespace pgmux::routing {

// Classifies every statement in `sql` from its parse tree and combines them (StatementCombiner), and lists the
// functions called and relations read by its reads (EXPLAIN without ANALYZE runs nothing: not listed), for the
// catalog to decide about (Classifier::classify). A parse error gives Write with reason "unparsable". Sets
// `parsed`; primary_hint is the caller's job.
ParsedStatements parse_statements(std::string_view sql, const Classifier& classifier);

// Whether PostgreSQL's grammar accepts the text (a syntax error is what PostgreSQL reports before anything else).
bool parses_without_syntax_error(std::string_view sql);

// parse_statements(sql, classifier).classification: the class without a catalog.
Classification classify_parsed(std::string_view sql, const Classifier& classifier);

}  // namespace pgmux::routing
