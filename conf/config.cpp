// Lookups, enum names and password-format detection for the Config structs.
#include "conf/config.hpp"

#include <algorithm>
#include <initializer_list>
#include <thread>
#include <utility>

namespace pgmux::conf {
namespace {

template <typename T>
const T* find_by_name(const std::vector<T>& items, std::string_view name) {
  for (const T& item : items) {
    if (item.name == name) return &item;
  }
  return nullptr;
}

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/' || c == '=';
}

bool all_base64(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_base64_char);
}

// "<iterations>:<salt>$<StoredKey>:<ServerKey>" after the "SCRAM-SHA-256$" prefix. The keys are
// SHA-256 outputs, so 32 bytes, which base64 spells in exactly 44 characters.
bool is_scram_body(std::string_view body) {
  const size_t colon1 = body.find(':');
  const size_t dollar = body.find('$');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || dollar < colon1) return false;
  const std::string_view iterations = body.substr(0, colon1);
  const std::string_view salt = body.substr(colon1 + 1, dollar - colon1 - 1);
  const std::string_view keys = body.substr(dollar + 1);
  const size_t colon2 = keys.find(':');
  if (colon2 == std::string_view::npos) return false;
  const std::string_view stored_key = keys.substr(0, colon2);
  const std::string_view server_key = keys.substr(colon2 + 1);
  if (iterations.empty() || iterations.size() > 10 ||
      !std::all_of(iterations.begin(), iterations.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return all_base64(salt) && stored_key.size() == 44 && all_base64(stored_key) && server_key.size() == 44 &&
         all_base64(server_key);
}

}  // namespace

const User* Config::find_user(std::string_view name) const { return find_by_name(users, name); }

const Database* Config::find_database(std::string_view name) const {
  if (const Database* exact = find_by_name(databases, name)) return exact;
  return find_by_name(databases, std::string_view{"*"});  // wildcard entry serves any other name
}

const Backend* Config::find_backend(std::string_view name) const { return find_by_name(backends, name); }

std::string Config::health_check_user() const {
  if (!health_check.user.empty()) return health_check.user;
  if (!users.empty()) return users.front().name;
  return "postgres";
}

std::string Config::health_check_password() const {
  if (!health_check.password.empty()) return health_check.password;
  const User* u = find_user(health_check_user());
  // A hash or SCRAM secret cannot log in; then libpq falls back to trust or ~/.pgpass.
  if (u != nullptr && password_kind(u->password) == PasswordKind::Plain) return u->password;
  return "";
}

int Config::effective_workers() const {
  if (workers > 0) return workers;
  const unsigned cores = std::thread::hardware_concurrency();  // 0 when unknown
  return cores == 0 ? 1 : static_cast<int>(cores);
}

AuthMethod Config::effective_auth_method(const User& user) const { return user.auth_method.value_or(auth_method); }

PoolMode Config::effective_pool_mode(const User* user, const Database& database) {
  if (user != nullptr && user->pool_mode) return *user->pool_mode;
  return database.pool_mode;
}

namespace {

// Each enum's names, in one table both ways.
template <typename T>
using NameTable = std::initializer_list<std::pair<T, const char*>>;

template <typename T>
const char* name_in(NameTable<T> names, T value) {
  for (const auto& [v, name] : names) {
    if (v == value) return name;
  }
  return "unknown";
}

template <typename T>
std::optional<T> value_in(NameTable<T> names, std::string_view text) {
  for (const auto& [v, name] : names) {
    if (text == name) return v;
  }
  return std::nullopt;
}

const NameTable<AuthMethod> kAuthMethodNames = {
    {AuthMethod::ScramSha256, "scram-sha-256"}, {AuthMethod::Md5, "md5"}, {AuthMethod::Trust, "trust"}};
const NameTable<PoolMode> kPoolModeNames = {
    {PoolMode::Session, "session"}, {PoolMode::Transaction, "transaction"}, {PoolMode::Statement, "statement"}};
const NameTable<LogLevel> kLogLevelNames = {
    {LogLevel::Debug, "debug"}, {LogLevel::Info, "info"}, {LogLevel::Warn, "warn"}, {LogLevel::Error, "error"}};
const NameTable<LogFormat> kLogFormatNames = {{LogFormat::Text, "text"}, {LogFormat::Json, "json"}};
const NameTable<Consistency> kConsistencyNames = {
    {Consistency::Causal, "causal"}, {Consistency::Session, "session"}, {Consistency::Eventual, "eventual"}};
const NameTable<FailoverMode> kFailoverModeNames = {{FailoverMode::External, "external"},
                                                    {FailoverMode::Pgmux, "pgmux"}};
const NameTable<TopologySourceKind> kTopologySourceNames = {{TopologySourceKind::Probe, "probe"},
                                                            {TopologySourceKind::Patroni, "patroni"}};
const NameTable<TlsMode> kTlsModeNames = {{TlsMode::Disable, "disable"},    {TlsMode::Allow, "allow"},
                                          {TlsMode::Prefer, "prefer"},      {TlsMode::Require, "require"},
                                          {TlsMode::VerifyCa, "verify-ca"}, {TlsMode::VerifyFull, "verify-full"}};

}  // namespace

const char* to_string(AuthMethod m) { return name_in(kAuthMethodNames, m); }
const char* to_string(PoolMode m) { return name_in(kPoolModeNames, m); }
const char* to_string(LogLevel l) { return name_in(kLogLevelNames, l); }
const char* to_string(LogFormat f) { return name_in(kLogFormatNames, f); }
const char* to_string(Consistency c) { return name_in(kConsistencyNames, c); }
const char* to_string(TlsMode m) { return name_in(kTlsModeNames, m); }
const char* to_string(FailoverMode m) { return name_in(kFailoverModeNames, m); }
const char* to_string(TopologySourceKind k) { return name_in(kTopologySourceNames, k); }

std::optional<AuthMethod> parse_auth_method(std::string_view text) { return value_in(kAuthMethodNames, text); }
std::optional<PoolMode> parse_pool_mode(std::string_view text) { return value_in(kPoolModeNames, text); }
std::optional<LogLevel> parse_log_level(std::string_view text) { return value_in(kLogLevelNames, text); }
std::optional<LogFormat> parse_log_format(std::string_view text) { return value_in(kLogFormatNames, text); }
std::optional<Consistency> parse_consistency(std::string_view text) { return value_in(kConsistencyNames, text); }
std::optional<TlsMode> parse_tls_mode(std::string_view text) { return value_in(kTlsModeNames, text); }
std::optional<FailoverMode> parse_failover_mode(std::string_view text) { return value_in(kFailoverModeNames, text); }
std::optional<TopologySourceKind> parse_topology_source(std::string_view text) {
  return value_in(kTopologySourceNames, text);
}

std::optional<HttpUrl> parse_http_url(std::string_view text) {
  constexpr std::string_view kScheme = "http://";
  if (text.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  text.remove_prefix(kScheme.size());
  if (!text.empty() && text.back() == '/') text.remove_suffix(1);
  HttpUrl url;
  std::string_view host = text;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {  // [v6 address]:port
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
    }
  } else if (const size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || host.find_first_of("/?#@ ") != std::string_view::npos) return std::nullopt;
  url.host = std::string(host);
  if (!port.empty()) {
    int value = 0;
    for (char ch : port) {
      if (ch < '0' || ch > '9' || port.size() > 5) return std::nullopt;
      value = value * 10 + (ch - '0');
    }
    if (value < 1 || value > 65535) return std::nullopt;
    url.port = static_cast<uint16_t>(value);
  }
  return url;
}

PasswordKind password_kind(std::string_view password) {
  // Same test PostgreSQL applies to a stored md5 password: prefix plus exactly 32 lowercase hex digits.
  if (password.size() == 35 && password.starts_with("md5") &&
      std::all_of(password.begin() + 3, password.end(), is_lower_hex)) {
    return PasswordKind::Md5Hash;
  }
  constexpr std::string_view kScramPrefix = "SCRAM-SHA-256$";
  if (password.starts_with(kScramPrefix) && is_scram_body(password.substr(kScramPrefix.size()))) {
    return PasswordKind::ScramSecret;
  }
  return PasswordKind::Plain;
}

}  // namespace pgmux::conf
