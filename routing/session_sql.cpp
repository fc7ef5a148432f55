#include "routing/session_sql.hpp"

#include <pg_query.h>

#include <algorithm>
#include <cctype>

#include "routing/sql_lexer.hpp"

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

// The settings PostgreSQL reads as a list of identifiers (GUC_LIST_QUOTE) that a session may set. SET "name" = 'a,b'
// would make such a list one element named "a,b"; set_config reads the value as a startup parameter is read.
bool is_identifier_list_setting(std::string_view name) {
  for (std::string_view list : {"search_path", "temp_tablespaces", "local_preload_libraries",
                                "session_preload_libraries"}) {
    const auto same = [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; };
    if (name.size() == list.size() && std::equal(name.begin(), name.end(), list.begin(), same)) return true;
  }
  return false;
}

}  // namespace

// SET for the rest: unlike a SELECT of set_config, it takes no snapshot, so it also runs where a role's default
// isolation level is one a hot standby refuses (SERIALIZABLE). The set_config answer is a row, which pgmux's internal
// runs drop (ServerConn::handle_internal_message).
void append_set_statement(std::string& sql, std::string_view name, std::string_view value) {
  if (!is_identifier_list_setting(name)) {
    sql += "SET ";
    append_quoted(sql, name, '"');
    sql += " = ";
    append_quoted(sql, value, '\'');
    return;
  }
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

namespace {

constexpr std::string_view kAnalysisParameters[] = {
    "search_path", "role",          "session_authorization", "timezone",        "timezone_abbreviations",
    "datestyle",   "intervalstyle", "standard_conforming_strings", "backslash_quote", "transform_null_equals",
    "array_nulls", "client_encoding", "default_text_search_config", "lc_monetary", "lc_numeric",
    "lc_time",     "xmloption",     "xmlbinary",             "row_security"};

bool same_letters(char lower, char any) { return lower == std::tolower(static_cast<unsigned char>(any)); }

bool mentions(std::string_view text, std::string_view lower) {
  return std::search(text.begin(), text.end(), lower.begin(), lower.end(),
                     [](char any, char l) { return same_letters(l, any); }) != text.end();
}

}  // namespace

bool affects_statement_analysis(std::string_view parameter) {
  return std::any_of(std::begin(kAnalysisParameters), std::end(kAnalysisParameters),
                     [&](std::string_view name) { return word_is(parameter, name); });
}

bool fixed_at_parse(std::string_view parameter) {
  for (std::string_view revalidated : {"search_path", "role", "session_authorization", "row_security"}) {
    if (word_is(parameter, revalidated)) return false;
  }
  return affects_statement_analysis(parameter);
}

bool may_affect_statement_analysis(std::string_view command) {
  static constexpr std::string_view kSpellings[] = {"time zone", "schema", "names", "authorization", "xml option"};
  const auto named = [&](std::string_view lower) { return mentions(command, lower); };
  return std::any_of(std::begin(kAnalysisParameters), std::end(kAnalysisParameters), named) ||
         std::any_of(std::begin(kSpellings), std::end(kSpellings), named);
}

namespace {

// Where the first token of `sql` starts: past white space and comments (-- to the line's end, /* */ nested).
size_t first_token(std::string_view sql) {
  size_t i = 0;
  while (i < sql.size()) {
    if (std::isspace(static_cast<unsigned char>(sql[i]))) {
      ++i;
    } else if (sql.substr(i, 2) == "--") {
      const size_t end = sql.find('\n', i);
      i = end == std::string_view::npos ? sql.size() : end + 1;
    } else if (sql.substr(i, 2) == "/*") {
      int depth = 0;
      do {
        if (sql.substr(i, 2) == "/*") {
          ++depth;
          i += 2;
        } else if (sql.substr(i, 2) == "*/") {
          --depth;
          i += 2;
        } else {
          ++i;
        }
      } while (depth > 0 && i < sql.size());
    } else {
      break;
    }
  }
  return i;
}

}  // namespace

bool replayable_setting_command(std::string_view command) {
  const std::string_view rest = command.substr(std::min(first_token(command), command.size()));
  const auto starts_with_word = [&](std::string_view lower) {
    if (rest.size() < lower.size() || !std::equal(lower.begin(), lower.end(), rest.begin(), same_letters)) return false;
    return rest.size() == lower.size() || !std::isalnum(static_cast<unsigned char>(rest[lower.size()]));
  };
  return starts_with_word("set") || starts_with_word("reset") ||
         (starts_with_word("select") && mentions(command, "set_config"));
}

bool has_parameter_reference(std::string_view sql) {
  for (size_t i = 0; i + 1 < sql.size(); ++i) {
    if (sql[i] == '$' && std::isdigit(static_cast<unsigned char>(sql[i + 1]))) return true;
  }
  return false;
}

namespace {

// Client encodings (and aliases) whose characters' second byte may be 0x5C, as PostgreSQL compares encoding names:
// lowercase, letters and digits only ('Shift-JIS' is shiftjis, 'BIG-5' big5).
constexpr std::string_view kBackslashTrailEncodings[] = {
    "sjis",   "shiftjis",   "mskanji", "win932",     "windows932", "big5",    "win950",
    "windows950", "gbk",    "win936",  "windows936", "cp936",      "gb18030", "johab"};

std::string letters_and_digits(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte)) out += static_cast<char>(std::tolower(byte));
  }
  return out;
}

bool names_backslash_trail_encoding(const std::string& cleaned) {
  return std::any_of(std::begin(kBackslashTrailEncodings), std::end(kBackslashTrailEncodings),
                     [&](std::string_view name) { return cleaned.find(name) != std::string::npos; });
}

}  // namespace

bool lexer_may_misread(std::string_view parameter, std::string_view value) {
  if (word_is(parameter, "standard_conforming_strings")) return !word_is(value, "on");
  return word_is(parameter, "client_encoding") && names_backslash_trail_encoding(letters_and_digits(value));
}

// Not the hot path: only requests that SET or RESET something get here.
bool may_change_text_reading(std::string_view command) {
  const std::string cleaned = letters_and_digits(command);
  if (cleaned.find("standardconformingstrings") != std::string::npos) return true;  // whatever it sets it to
  if (cleaned.find("clientencoding") == std::string::npos && cleaned.find("names") == std::string::npos) return false;
  return names_backslash_trail_encoding(cleaned);
}

}  // namespace pgmux::routing
