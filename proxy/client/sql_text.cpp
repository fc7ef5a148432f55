#include "proxy/client/sql_text.hpp"

#include <cctype>

namespace pgmux::proxy {

bool starts_with_keyword(std::string_view sql, std::string_view keyword) {
  size_t i = 0;
  while (i < sql.size() && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r')) ++i;
  if (sql.size() - i < keyword.size()) return false;
  for (size_t k = 0; k < keyword.size(); ++k) {
    if (std::toupper(static_cast<unsigned char>(sql[i + k])) != keyword[k]) return false;
  }
  return sql.size() == i + keyword.size() || !std::isalnum(static_cast<unsigned char>(sql[i + keyword.size()]));
}

bool may_hold_session_command(std::string_view sql) {
  static constexpr std::string_view kWords[] = {"SET", "RESET", "DISCARD", "PREPARE", "DEALLOCATE", "LISTEN", "DECLARE"};
  for (size_t i = 0; i < sql.size(); ++i) {
    const bool word_start = i == 0 || !std::isalnum(static_cast<unsigned char>(sql[i - 1]));
    if (!word_start) continue;
    for (auto word : kWords) {
      if (starts_with_keyword(sql.substr(i), word)) return true;
    }
  }
  return false;
}

bool resets_all_settings(std::string_view sql) {
  if (!starts_with_keyword(sql, "RESET") && !starts_with_keyword(sql, "DISCARD")) return false;
  size_t i = sql.find_first_of(" \t\r\n");
  if (i == std::string_view::npos) return false;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  return starts_with_keyword(sql.substr(i), "ALL");
}

}  // namespace pgmux::proxy
