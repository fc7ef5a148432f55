#include "proxy/ops/admin/live_settings.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

namespace pgmux::proxy::admin {

namespace {

using conf::Config;
constexpr double kYear = 365.0 * 24 * 3600;

std::string number_text(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.6g", value);
  return text;
}

bool parse_number(std::string_view text, double* out) {
  std::string s(text);
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out);
}

std::string lower(std::string_view text) {
  std::string s(text);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A numeric setting reached through `field`, a callable Config& -> T& (reads go through it too, on a const Config).
template <typename Field>
LiveSetting number_setting_at(std::string key, Field field, double min, double max) {
  using T = std::remove_reference_t<decltype(field(std::declval<Config&>()))>;
  LiveSetting s;
  s.key = std::move(key);
  s.get = [field](const Config& c) {
    const T value = field(const_cast<Config&>(c));
    if constexpr (std::is_integral_v<T>) {
      return std::to_string(value);
    } else {
      return number_text(static_cast<double>(value));
    }
  };
  s.set = [field, min, max](Config& c, std::string_view text) -> std::string {
    double value = 0;
    const bool integral = std::is_integral_v<T>;
    if (!parse_number(text, &value) || value < min || value > max || (integral && value != std::floor(value))) {
      return std::string("must be ") + (integral ? "an integer" : "a number") + " from " + number_text(min) +
             " to " + number_text(max);
    }
    field(c) = static_cast<T>(value);
    return "";
  };
  return s;
}

template <typename Section, typename T>
LiveSetting number_setting(std::string key, Section Config::*section, T Section::*member, double min, double max) {
  return number_setting_at(
      std::move(key), [section, member](Config& c) -> T& { return (c.*section).*member; }, min, max);
}

template <typename T>
LiveSetting number_setting(std::string key, T Config::*member, double min, double max) {
  return number_setting_at(std::move(key), [member](Config& c) -> T& { return c.*member; }, min, max);
}

// An on/off setting read with get(const Config&) -> bool and written with put(Config&, bool).
template <typename Get, typename Put>
LiveSetting bool_setting_at(std::string key, Get get, Put put) {
  LiveSetting s;
  s.key = std::move(key);
  s.get = [get](const Config& c) { return std::string(get(c) ? "on" : "off"); };
  s.set = [put](Config& c, std::string_view text) -> std::string {
    const std::string v = lower(text);
    if (v == "on" || v == "true" || v == "yes" || v == "1") {
      put(c, true);
    } else if (v == "off" || v == "false" || v == "no" || v == "0") {
      put(c, false);
    } else {
      return "must be on or off";
    }
    return "";
  };
  return s;
}

template <typename Section>
LiveSetting bool_setting(std::string key, Section Config::*section, bool Section::*member) {
  return bool_setting_at(
      std::move(key), [section, member](const Config& c) { return (c.*section).*member; },
      [section, member](Config& c, bool on) { (c.*section).*member = on; });
}

LiveSetting read_only(std::string key, Changeable changeable, std::function<std::string(const Config&)> get) {
  LiveSetting s;
  s.key = std::move(key);
  s.changeable = changeable;
  s.get = std::move(get);
  return s;
}

// A setting with named values (conf::to_string and its inverse parse): `field` is a callable Config& -> T&.
template <typename Field, typename Parse>
LiveSetting named_setting(std::string key, Field field, Parse parse, const char* choices) {
  LiveSetting s;
  s.key = std::move(key);
  s.get = [field](const Config& c) { return std::string(conf::to_string(field(const_cast<Config&>(c)))); };
  s.set = [field, parse, choices](Config& c, std::string_view text) -> std::string {
    auto parsed = parse(lower(text));
    if (!parsed) return std::string("must be one of ") + choices;
    field(c) = *parsed;
    return "";
  };
  return s;
}

// The key routing.consistency replaced, kept for scripts that set it: on is causal, off is eventual.
LiveSetting read_your_writes_alias() {
  return bool_setting_at(
      "routing.read_your_writes", [](const Config& c) { return c.routing.consistency != conf::Consistency::Eventual; },
      [](Config& c, bool on) { c.routing.consistency = on ? conf::Consistency::Causal : conf::Consistency::Eventual; });
}

std::vector<LiveSetting> build() {
  using conf::HealthCheck;
  using conf::Routing;
  using conf::Timeouts;
  std::vector<LiveSetting> out;
  out.push_back(read_only("listeners", Changeable::Restart, [](const Config& c) {
    std::string text;
    for (const auto& l : c.listeners) text += (text.empty() ? "" : ", ") + l.host + ":" + std::to_string(l.port);
    return text;
  }));
  out.push_back(read_only("workers", Changeable::Restart, [](const Config& c) { return std::to_string(c.workers); }));
  out.push_back(read_only("metrics_listen", Changeable::Restart, [](const Config& c) {
    return c.metrics_listen.enabled ? c.metrics_listen.host + ":" + std::to_string(c.metrics_listen.port) : "";
  }));
  out.push_back(read_only("auth_method", Changeable::Reload,
                          [](const Config& c) { return std::string(conf::to_string(c.auth_method)); }));
  out.push_back(number_setting("max_client_conn", &Config::max_client_conn, 1, 2147483647));
  out.push_back(
      number_setting("max_message_size", &Config::max_message_size, 1024, 1073741824));
  out.push_back(named_setting(
      "logging.level", [](Config& c) -> conf::LogLevel& { return c.logging.level; }, conf::parse_log_level,
      "debug, info, warn, error"));
  out.push_back(number_setting("prepared_statements.max_per_server", &Config::prepared_statements,
                               &conf::PreparedStatements::max_per_server, 1, 100000));
  // Routing.
  out.push_back(bool_setting("routing.read_write_split", &Config::routing, &Routing::read_write_split));
  out.push_back(number_setting("routing.max_lag_bytes", &Config::routing, &Routing::max_lag_bytes, 0, 9.0e15));
  out.push_back(number_setting("routing.max_lag_seconds", &Config::routing, &Routing::max_lag_seconds, 0.001, kYear));
  out.push_back(number_setting("routing.lag_hysteresis", &Config::routing, &Routing::lag_hysteresis, 0, kYear));
  out.push_back(bool_setting("routing.fallback_to_primary", &Config::routing, &Routing::fallback_to_primary));
  out.push_back(named_setting(
      "routing.consistency", [](Config& c) -> conf::Consistency& { return c.routing.consistency; },
      conf::parse_consistency, "causal, session, eventual"));
  out.push_back(read_your_writes_alias());
  out.push_back(number_setting("routing.causal_wait", &Config::routing, &Routing::causal_wait, 0, kYear));
  out.push_back(
      number_setting("routing.causal_poll_interval", &Config::routing, &Routing::causal_poll_interval, 0, kYear));
  out.push_back(bool_setting("routing.remote_apply_reads", &Config::routing, &Routing::remote_apply_reads));
  out.push_back(number_setting("routing.failover_timeout", &Config::routing, &Routing::failover_timeout, 0, kYear));
  // Timeouts.
  struct Duration {
    const char* key;
    double Timeouts::*member;
    double min;
  };
  const Duration durations[] = {
      {"timeouts.query_wait_timeout", &Timeouts::query_wait_timeout, 0.001},
      {"timeouts.server_idle_timeout", &Timeouts::server_idle_timeout, 0},  // 0 = never close idle servers
      {"timeouts.server_connect_timeout", &Timeouts::server_connect_timeout, 0.001},
      {"timeouts.client_login_timeout", &Timeouts::client_login_timeout, 0.001},
      {"timeouts.shutdown_timeout", &Timeouts::shutdown_timeout, 0.001},
      {"timeouts.reserve_pool_timeout", &Timeouts::reserve_pool_timeout, 0},
      {"timeouts.idle_transaction_timeout", &Timeouts::idle_transaction_timeout, 0},
      {"timeouts.client_idle_timeout", &Timeouts::client_idle_timeout, 0},
      {"timeouts.server_lifetime", &Timeouts::server_lifetime, 0},
      {"timeouts.server_check_delay", &Timeouts::server_check_delay, 0},
  };
  for (const Duration& d : durations) out.push_back(number_setting(d.key, &Config::timeouts, d.member, d.min, kYear));
  // Health check.
  out.push_back(number_setting("health_check.period", &Config::health_check, &HealthCheck::period, 0.1, kYear));
  out.push_back(number_setting("health_check.timeout", &Config::health_check, &HealthCheck::timeout, 0.001, kYear));
  out.push_back(number_setting("health_check.max_retries", &Config::health_check, &HealthCheck::max_retries, 0, 100));
  return out;
}

}  // namespace

const char* to_string(Changeable c) {
  switch (c) {
    case Changeable::Set: return "yes";
    case Changeable::Reload: return "reload";
    case Changeable::Restart: return "restart";
  }
  return "?";
}

const std::vector<LiveSetting>& live_settings() {
  static const std::vector<LiveSetting> settings = build();
  return settings;
}

const LiveSetting* find_live_setting(std::string_view key) {
  const std::string wanted = lower(key);
  const LiveSetting* by_suffix = nullptr;
  int suffix_matches = 0;
  for (const LiveSetting& s : live_settings()) {
    if (s.key == wanted) return &s;
    const size_t dot = s.key.rfind('.');
    if (dot != std::string::npos && s.key.compare(dot + 1, std::string::npos, wanted) == 0) {
      by_suffix = &s;
      ++suffix_matches;
    }
  }
  return suffix_matches == 1 ? by_suffix : nullptr;
}

}  // namespace pgmux::proxy::admin
