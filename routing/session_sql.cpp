#include "routing/session_sql.hpp"

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

void append_set_statement(std::string& sql, std::string_view name, std::string_view value) {
  sql += "SET ";
  append_quoted(sql, name, '"');
  sql += " = ";
  append_quoted(sql, value, '\'');
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

}  // namespace pgmux::routing
