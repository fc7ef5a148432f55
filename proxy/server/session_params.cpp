#include "proxy/server/session_params.hpp"

#include <strings.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <iterator>
#include <optional>

#include "proxy/server/zone_names.hpp"
#include "routing/session_sql.hpp"

namespace pgmux::proxy {
namespace {

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

void SessionParams::changed() {
  static std::atomic<uint64_t> last_stamp{0};  // sets move between workers with their servers
  stamp_ = last_stamp.fetch_add(1, std::memory_order_relaxed) + 1;
  synced_for_ = kNotSynced;
}

void SessionParams::set(std::string_view name, std::string_view value) {
  changed();
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

namespace {

// DateStyle's words as PostgreSQL's check reads them: a style, or an order (with its synonyms).
struct DateStyleWord {
  std::string_view word;
  const char* style;
  const char* order;
};
constexpr DateStyleWord kDateStyleWords[] = {
    {"iso", "ISO", nullptr},    {"sql", "SQL", nullptr},     {"postgres", "Postgres", nullptr},
    {"german", "German", nullptr}, {"ymd", nullptr, "YMD"},  {"dmy", nullptr, "DMY"},
    {"euro", nullptr, "DMY"},   {"european", nullptr, "DMY"}, {"mdy", nullptr, "MDY"},
    {"us", nullptr, "MDY"},     {"noneuro", nullptr, "MDY"}, {"noneuropean", nullptr, "MDY"},
};

// DateStyle's two halves (style, order; empty when not given). False for a word not known here or a conflict (the
// server refuses those, or reads them in ways left to it).
bool read_datestyle(std::string_view value, std::string& style, std::string& order) {
  bool order_given = false;
  const auto take = [&](std::string_view word) {
    if (word.empty()) return true;
    const auto* known = std::find_if(std::begin(kDateStyleWords), std::end(kDateStyleWords),
                                     [&](const DateStyleWord& w) { return same_name(w.word, word); });
    if (known == std::end(kDateStyleWords)) return false;
    if (known->style) {
      if (!style.empty() && style != known->style) return false;
      style = known->style;
      if (!order_given && style == "German") order = "DMY";  // German implies DMY unless an order is given
      return true;
    }
    if (order_given && order != known->order) return false;
    order = known->order;
    order_given = true;
    return true;
  };
  size_t start = 0;
  for (size_t i = 0; i <= value.size(); ++i) {
    if (i < value.size() && value[i] != ',' && value[i] != ' ' && value[i] != '\t') continue;
    if (!take(value.substr(start, i - start))) return false;
    start = i + 1;
  }
  return true;
}

}  // namespace

namespace {

// A boolean as PostgreSQL's parse_bool reads it (on, off, true, false, yes, no, 1, 0, and unique prefixes, in any
// case): "on" / "off" as it reports the parameter; nullopt for anything else (refused there).
std::optional<std::string> bool_spelling(std::string_view value) {
  std::string v;
  for (char c : value) v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto prefix_of = [&](std::string_view word, size_t at_least) {
    return v.size() >= at_least && v.size() <= word.size() && word.substr(0, v.size()) == v;
  };
  if (v == "1" || prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2)) return "on";
  if (v == "0" || prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2)) return "off";
  return std::nullopt;
}

// A client encoding's name as PostgreSQL reports it (pg_encoding_to_char), from any of the names it accepts:
// compared without case and without what is not a letter or digit, as its clean_encoding_name does. Nullopt for
// a name it does not know (refused there; reported as given).
std::optional<std::string> encoding_spelling(std::string_view value) {
  std::string clean;
  for (char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte)) clean += static_cast<char>(std::tolower(byte));
  }
  static const std::array<std::pair<std::string_view, std::string_view>, 79> kNames = {{
      {"abc", "WIN1258"}, {"alt", "WIN866"}, {"big5", "BIG5"}, {"euccn", "EUC_CN"},
      {"eucjis2004", "EUC_JIS_2004"}, {"eucjp", "EUC_JP"}, {"euckr", "EUC_KR"}, {"euctw", "EUC_TW"},
      {"gb18030", "GB18030"}, {"gbk", "GBK"}, {"iso88591", "LATIN1"}, {"iso885910", "LATIN6"},
      {"iso885913", "LATIN7"}, {"iso885914", "LATIN8"}, {"iso885915", "LATIN9"}, {"iso885916", "LATIN10"},
      {"iso88592", "LATIN2"}, {"iso88593", "LATIN3"}, {"iso88594", "LATIN4"}, {"iso88595", "ISO_8859_5"},
      {"iso88596", "ISO_8859_6"}, {"iso88597", "ISO_8859_7"}, {"iso88598", "ISO_8859_8"}, {"iso88599", "LATIN5"},
      {"johab", "JOHAB"}, {"koi8", "KOI8R"}, {"koi8r", "KOI8R"}, {"koi8u", "KOI8U"}, {"latin1", "LATIN1"},
      {"latin10", "LATIN10"}, {"latin2", "LATIN2"}, {"latin3", "LATIN3"}, {"latin4", "LATIN4"},
      {"latin5", "LATIN5"}, {"latin6", "LATIN6"}, {"latin7", "LATIN7"}, {"latin8", "LATIN8"},
      {"latin9", "LATIN9"}, {"mskanji", "SJIS"}, {"muleinternal", "MULE_INTERNAL"}, {"shiftjis", "SJIS"},
      {"shiftjis2004", "SHIFT_JIS_2004"}, {"sjis", "SJIS"}, {"sqlascii", "SQL_ASCII"}, {"tcvn", "WIN1258"},
      {"tcvn5712", "WIN1258"}, {"uhc", "UHC"}, {"vscii", "WIN1258"}, {"win", "WIN1251"}, {"win1250", "WIN1250"},
      {"win1251", "WIN1251"}, {"win1252", "WIN1252"}, {"win1253", "WIN1253"}, {"win1254", "WIN1254"},
      {"win1255", "WIN1255"}, {"win1256", "WIN1256"}, {"win1257", "WIN1257"}, {"win1258", "WIN1258"},
      {"win866", "WIN866"}, {"win874", "WIN874"}, {"win932", "SJIS"}, {"win936", "GBK"}, {"win949", "UHC"},
      {"win950", "BIG5"}, {"windows1250", "WIN1250"}, {"windows1251", "WIN1251"}, {"windows1252", "WIN1252"},
      {"windows1253", "WIN1253"}, {"windows1254", "WIN1254"}, {"windows1255", "WIN1255"},
      {"windows1256", "WIN1256"}, {"windows1257", "WIN1257"}, {"windows1258", "WIN1258"},
      {"windows866", "WIN866"}, {"windows874", "WIN874"}, {"windows932", "SJIS"}, {"windows936", "GBK"},
      {"windows949", "UHC"}, {"windows950", "BIG5"},
  }};
  for (const auto& [alias, name] : kNames) {
    if (alias == clean) return std::string(name);
  }
  return std::nullopt;
}

}  // namespace

std::string postgres_spelling(std::string_view name, std::string_view value, const std::string* current) {
  // The boolean parameters PostgreSQL reports (libpq compares standard_conforming_strings with "on" exactly).
  if (same_name(name, "standard_conforming_strings") || same_name(name, "default_transaction_read_only")) {
    return bool_spelling(value).value_or(std::string(value));
  }
  if (same_name(name, "application_name")) {
    std::string spelled(value.substr(0, 63));
    for (char& c : spelled) {
      if (c < 32 || c > 126) c = '?';
    }
    return spelled;
  }
  if (same_name(name, "client_encoding")) {
    std::string bare;
    for (char c : value) {
      if (c != '-' && c != '_') bare += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (bare == "utf8" || bare == "unicode") return "UTF8";
    return encoding_spelling(value).value_or(std::string(value));
  }
  if (same_name(name, "datestyle")) {
    std::string style, order, current_style, current_order;
    if (!read_datestyle(value, style, order) || (style.empty() && order.empty())) return std::string(value);
    if (current && read_datestyle(*current, current_style, current_order)) {
      if (style.empty()) style = current_style;
      if (order.empty()) order = current_order;
    }
    if (style.empty() || order.empty()) return std::string(value);
    return style + ", " + order;
  }
  if (same_name(name, "timezone")) return zone_file_spelling(value).value_or(std::string(value));
  return std::string(value);
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
  changed();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (same_name(it->first, name)) {
      entries_.erase(it);
      return;
    }
  }
}

namespace {
// The common case at a transaction-pooling check-out: the server was last synced for the same parameters and
// reports no other value for any of them since. Nothing to send and nothing to record.
bool already_synced(const SessionParams& wanted, const SessionParams& reported, const SessionParams& applied) {
  if (applied.entries() != wanted.entries()) return false;
  for (const auto& [name, value] : wanted.entries()) {
    const std::string* current = reported.find(name);
    if (current && *current != value) return false;
  }
  return true;
}
}  // namespace

std::string build_sync_sql(const SessionParams& wanted, const SessionParams& reported, SessionParams& applied) {
  const std::pair<uint64_t, uint64_t> stamps{wanted.stamp(), reported.stamp()};
  if (applied.synced_for_ == stamps) return {};  // nothing changed since the last check
  if (already_synced(wanted, reported, applied)) {
    applied.synced_for_ = stamps;
    return {};
  }
  std::string sql;
  std::vector<std::string> to_reset;
  for (const auto& [name, value] : applied.entries()) {
    if (!wanted.find(name)) to_reset.push_back(name);
  }
  for (const auto& name : to_reset) {
    routing::append_reset_statement(sql, name);
    sql += ';';
    applied.erase(name);
  }
  for (const auto& [name, value] : wanted.entries()) {
    const std::string* current = reported.find(name);
    if (!current) current = applied.find(name);
    // Compared before applied.set, which may overwrite the very string `current` points at (an unreported
    // parameter): compared after, the previous client's search_path looked like this one's and stayed.
    const bool same = current && *current == value;
    applied.set(name, value);  // whatever happens, this client wants it: the next one may need it RESET
    if (same) continue;
    routing::append_set_statement(sql, name, value);
    sql += ';';
  }
  return sql;
}

}  // namespace pgmux::proxy
