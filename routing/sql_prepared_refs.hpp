// Which SQL-level prepared statements (PREPARE name AS ..., not the protocol's Parse) a string creates, runs,
// drops or lists. Transaction pooling keeps a client's SQL prepared statements itself and prepares each on the
// server that runs a statement naming it, so clients are not pinned to one server (DESIGN.md §3.6). A lexical
// scan: asked only for clients that have such statements or requests that create them, never on the common path.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::routing {

enum class PreparedRefKind : uint8_t {
  Prepare,        // PREPARE name [(types)] AS statement
  Execute,        // EXECUTE name [(args)], also inside EXPLAIN and CREATE TABLE ... AS
  Deallocate,     // DEALLOCATE [PREPARE] name
  DeallocateAll,  // DEALLOCATE [PREPARE] ALL
  ListAll,        // reads pg_prepared_statements: every statement of the session is visible
};

struct PreparedRef {
  PreparedRefKind kind = PreparedRefKind::Execute;
  std::string name;             // as PostgreSQL folds it: lowercase unless quoted, at most 63 bytes
  std::string_view statement;   // Prepare: the whole PREPARE statement, without its ';'
};

// Every reference in the string, in order. Text the lexer cannot scan gives what was read before the error.
std::vector<PreparedRef> prepared_statement_refs(std::string_view sql);

// An identifier token as PostgreSQL stores it: "Quoted" → Quoted ("" → "), unquoted → ASCII lowercase;
// truncated to 63 bytes at a UTF-8 character boundary, as NAMEDATALEN does.
std::string fold_identifier(std::string_view token);

}  // namespace pgmux::routing
