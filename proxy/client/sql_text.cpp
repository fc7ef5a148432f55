#include "proxy/client/sql_text.hpp"

#include <cctype>
#include <cstdint>
#include <cstdio>

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

std::string server_statement_name(protocol::ByteView parse_message) {
  size_t name_end = 5;
  while (name_end < parse_message.size() && parse_message[name_end] != std::byte{0}) ++name_end;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (size_t i = name_end + 1; i < parse_message.size(); ++i) {
    hash ^= static_cast<uint8_t>(parse_message[i]);
    hash *= 1099511628211ull;
  }
  char name[32];
  snprintf(name, sizeof name, "pgmux_%016llx", static_cast<unsigned long long>(hash));
  return name;
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
