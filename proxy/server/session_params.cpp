#include "proxy/server/session_params.hpp"

#include <strings.h>

#include <cctype>

namespace pgmux::proxy {
namespace {

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

void append_literal(std::string& sql, std::string_view value) {
  sql += '\'';
  for (char c : value) {
    if (c == '\'') sql += '\'';
    sql += c;
  }
  sql += '\'';
}

void append_identifier(std::string& sql, std::string_view name) {
  sql += '"';
  for (char c : name) {
    if (c == '"') sql += '"';
    sql += c;
  }
  sql += '"';
}

}  // namespace

void SessionParams::set(std::string_view name, std::string_view value) {
  for (auto& [key, current] : entries_) {
    if (same_name(key, name)) {
      current.assign(value);
      return;
    }
  }
  entries_.emplace_back(std::string(name), std::string(value));
}

const std::string* SessionParams::find(std::string_view name) const {
  for (const auto& [key, value] : entries_) {
    if (same_name(key, name)) return &value;
  }
  return nullptr;
}

std::string set_statement(std::string_view name, std::string_view value) {
  std::string sql = "SET ";
  append_identifier(sql, name);
  sql += " = ";
  append_literal(sql, value);
  return sql;
}

std::string reset_target(std::string_view sql) {
  size_t i = 0;
  auto skip_space = [&] {
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  };
  skip_space();
  if (sql.size() - i < 5 || strncasecmp(sql.data() + i, "RESET", 5) != 0) return {};
  i += 5;
  if (i < sql.size() && !std::isspace(static_cast<unsigned char>(sql[i]))) return {};
  skip_space();
  std::string name;
  if (i < sql.size() && sql[i] == '"') {
    size_t end = sql.find('"', i + 1);
    if (end == std::string_view::npos) return {};
    name.assign(sql.substr(i + 1, end - i - 1));
    i = end + 1;
  } else {
    while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_' || sql[i] == '.')) {
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(sql[i])));
      ++i;
    }
  }
  skip_space();
  if (i < sql.size() && sql[i] == ';') ++i;
  skip_space();
  if (i != sql.size() || name.empty() || name == "all" || name == "session") return {};
  return name;
}

bool is_connection_key(std::string_view name) {
  return name == "user" || name == "database" || name == "options" || name == "replication";
}

bool parse_options_parameter(std::string_view options, SessionParams& out) {
  // Tokens are separated by spaces; a backslash escapes the next character (libpq's rule).
  std::vector<std::string> tokens;
  std::string token;
  bool escaped = false;
  for (char c : options) {
    if (escaped) {
      token += c;
      escaped = false;
    } else if (c == '\\') {
      escaped = true;
    } else if (c == ' ' || c == '\t') {
      if (!token.empty()) tokens.push_back(std::move(token)), token.clear();
    } else {
      token += c;
    }
  }
  if (!token.empty()) tokens.push_back(std::move(token));

  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string setting;
    if (tokens[i] == "-c" && i + 1 < tokens.size()) {
      setting = tokens[++i];
    } else if (tokens[i].rfind("-c", 0) == 0 && tokens[i].size() > 2) {
      setting = tokens[i].substr(2);
    } else if (tokens[i].rfind("--", 0) == 0) {
      setting = tokens[i].substr(2);
    } else {
      return false;
    }
    auto eq = setting.find('=');
    if (eq == std::string::npos || eq == 0) return false;
    std::string name = setting.substr(0, eq);
    for (char& c : name) {
      if (c == '-') c = '_';  // "--search-path=x" spells the name with dashes
    }
    out.set(name, std::string_view(setting).substr(eq + 1));
  }
  return true;
}

void SessionParams::erase(std::string_view name) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (same_name(it->first, name)) {
      entries_.erase(it);
      return;
    }
  }
}

std::string build_sync_sql(const SessionParams& wanted, const SessionParams& reported, SessionParams& applied) {
  std::string sql;
  std::vector<std::string> to_reset;
  for (const auto& [name, value] : applied.entries()) {
    if (!wanted.find(name)) to_reset.push_back(name);
  }
  for (const auto& name : to_reset) {
    sql += "RESET ";
    append_identifier(sql, name);
    sql += ';';
    applied.erase(name);
  }
  for (const auto& [name, value] : wanted.entries()) {
    const std::string* current = reported.find(name);
    if (!current) current = applied.find(name);
    applied.set(name, value);  // whatever happens, this client wants it: the next one may need it RESET
    if (current && *current == value) continue;
    sql += "SET ";
    append_identifier(sql, name);
    sql += " = ";
    append_literal(sql, value);
    sql += ';';
  }
  return sql;
}

}  // namespace pgmux::proxy
