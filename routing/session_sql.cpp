#include "routing/session_sql.hpp"

#include <pg_query.h>

#include <cctype>

namespace pgmux::routing {
namespace {

// Wraps text in `quote`, doubling every quote inside: '...' for literals, "..." for identifiers.
void append_quoted(std::string& sql, std::string_view text, char quote) {
  sql += quote;
  for (char c : text) {
    if (c == quote) sql += quote;
    sql += c;
  }
  sql += quote;
}

}  // namespace

// set_config reads the value as a startup parameter or postgresql.conf does; SET "name" = 'a,b' would make a list
// setting (search_path, temp_tablespaces) one element named "a,b". It answers with a row, which pgmux's internal
// runs drop (ServerConn::handle_internal_message).
void append_set_statement(std::string& sql, std::string_view name, std::string_view value) {
  sql += "SELECT pg_catalog.set_config(";
  append_quoted(sql, name, '\'');
  sql += ", ";
  append_quoted(sql, value, '\'');
  sql += ", false)";
}

void append_reset_statement(std::string& sql, std::string_view name) {
  sql += "RESET ";
  append_quoted(sql, name, '"');
}

std::string set_statement(std::string_view name, std::string_view value) {
  std::string sql;
  append_set_statement(sql, name, value);
  return sql;
}

std::vector<std::string> split_statements(std::string_view sql) {
  const std::string text(sql);  // libpg_query wants a NUL-terminated string
  PgQuerySplitResult result = pg_query_split_with_scanner(text.c_str());
  std::vector<std::string> statements;
  if (!result.error) {
    for (int i = 0; i < result.n_stmts; ++i) {
      std::string_view piece(text.data() + result.stmts[i]->stmt_location,
                             static_cast<size_t>(result.stmts[i]->stmt_len));
      while (!piece.empty() && std::isspace(static_cast<unsigned char>(piece.front()))) piece.remove_prefix(1);
      while (!piece.empty() && (std::isspace(static_cast<unsigned char>(piece.back())) || piece.back() == ';')) {
        piece.remove_suffix(1);
      }
      if (!piece.empty()) statements.emplace_back(piece);
    }
  }
  pg_query_free_split_result(result);
  return statements;
}

}  // namespace pgmux::routing
