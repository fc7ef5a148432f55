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
  // Prepare without a list of parameter types (PostgreSQL infers them): where in `statement` one would go, right
  // after the name. npos when the PREPARE lists them.
  size_t types_at = std::string_view::npos;
  bool unicode_escapes = false;  // the name is a U&"..." identifier, whose escapes `name` does not decode

  // `name` is the name PostgreSQL gives the statement: no U& escapes, and plain ASCII unless the client encoding is
  // UTF8 (PostgreSQL folds case and cuts at 63 bytes after converting to the server's encoding, and in SJIS, BIG5
  // or GBK a character's second byte may be an ASCII letter, which must not be folded).
  bool name_exact(bool client_utf8) const;
};

// Every reference in the string, in order, read as a session with the default string syntax reads it
// (Reading::Standard). Text the lexer cannot scan gives what was read before the error.
std::vector<PreparedRef> prepared_statement_refs(std::string_view sql);

// The PREPARE statement `prepare` with `types` (", "-separated type names, as parameter_types_query reads them)
// spelled out after its name, when it lists none; else `prepare` as it is.
std::string with_parameter_types(std::string_view prepare, std::string_view types);

// The query that reads the parameter types of the session's prepared statement `name` (folded) as names SQL reads
// back: one row, "pg_catalog.int4, public.mood"; NULL for a statement without parameters, or without such a
// statement.
std::string parameter_types_query(std::string_view name);

// An identifier token as PostgreSQL stores it: "Quoted" → Quoted ("" → "), unquoted → ASCII lowercase;
// truncated to 63 bytes at a UTF-8 character boundary, as NAMEDATALEN does.
std::string fold_identifier(std::string_view token);

}  // namespace pgmux::routing
