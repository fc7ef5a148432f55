// The SQL lexer and the helpers built on it: every token lies inside the text and the walk ends; statement
// splitting and the PREPARE/EXECUTE/DEALLOCATE name finder take any text.
#include <cstdlib>

#include "routing/session_sql.hpp"
#include "routing/sql_lexer.hpp"
#include "routing/sql_prepared_refs.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::routing;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view sql = pgmux::fuzz::as_text(data, size);
  SqlLexer lexer(sql);
  size_t tokens = 0;
  for (Token token = lexer.next(); token.kind != TokenKind::End; token = lexer.next()) {
    const char* begin = token.text.data();
    if (begin < sql.data() || begin + token.text.size() > sql.data() + sql.size()) std::abort();
    if (token.text.empty() || ++tokens > size) std::abort();  // no empty token, no endless walk
  }
  (void)split_statements(sql);
  for (const auto& ref : prepared_statement_refs(sql)) (void)fold_identifier(ref.name);
  return 0;
}
