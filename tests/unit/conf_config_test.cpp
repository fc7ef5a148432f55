// Config structs: lookups, enum names, effective values, password formats.
#include <doctest/doctest.h>

#include <thread>

#include "conf/config.hpp"

using namespace pgmux::conf;

namespace {

Config two_databases(bool with_wildcard) {
  Config c;
  Database app;
  app.name = "app";
  app.server_database = "app";
  c.databases.push_back(app);
  if (with_wildcard) {
    Database any;
    any.name = "*";
    any.pool_size = 10;
    c.databases.push_back(any);
  }
  return c;
}

}  // namespace

TEST_CASE("conf: struct defaults match the documented ones") {
  const Config c;
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].host == "127.0.0.1");
  CHECK(c.listeners[0].port == 9999);
  CHECK(c.workers == 0);
  CHECK(c.auth_method == AuthMethod::ScramSha256);
  CHECK(c.max_message_size == 67108864u);
  CHECK(c.max_client_conn == 10000);
  CHECK(c.timeouts.query_wait_timeout == 120);
  CHECK(c.timeouts.server_idle_timeout == 600);
  CHECK(c.timeouts.server_connect_timeout == 5);
  CHECK(c.timeouts.client_login_timeout == 60);
  CHECK(c.timeouts.shutdown_timeout == 30);
  CHECK(c.logging.level == LogLevel::Info);
  CHECK(c.logging.file.empty());
}

TEST_CASE("conf: pooling limits, timeouts and prepared-statement defaults match the documented ones") {
  const Config c;
  const Database d;
  CHECK(d.pool_mode == PoolMode::Session);
  CHECK(d.pool_size == 20);
  CHECK(d.min_pool_size == 0);
  CHECK(d.reserve_pool_size == 0);
  CHECK(d.max_db_connections == 0);  // no limit
  const User u;
  CHECK_FALSE(u.pool_mode.has_value());
  CHECK(u.max_user_connections == 0);  // no limit
  CHECK(c.timeouts.reserve_pool_timeout == 5);
  CHECK(c.timeouts.idle_transaction_timeout == 0);
  CHECK(c.timeouts.client_idle_timeout == 0);
  CHECK(c.timeouts.server_lifetime == 3600);
  CHECK(c.timeouts.server_check_delay == 30);
  CHECK(c.timeouts.auto_database_idle_timeout == 3600);
  CHECK(c.max_auto_databases == 100);
  CHECK(c.prepared_statements.max_per_server == 1000);
}

TEST_CASE("conf: find_database prefers the exact name, then falls back to \"*\"") {
  const Config with = two_databases(true);
  REQUIRE(with.find_database("app") != nullptr);
  CHECK(with.find_database("app")->name == "app");
  REQUIRE(with.find_database("other") != nullptr);
  CHECK(with.find_database("other")->name == "*");
  CHECK(with.find_database("*")->name == "*");
  CHECK(with.find_database("")->name == "*");

  const Config without = two_databases(false);
  CHECK(without.find_database("app") != nullptr);
  CHECK(without.find_database("other") == nullptr);
  CHECK(without.find_database("APP") == nullptr);  // names are case-sensitive, as in PostgreSQL
}

TEST_CASE("conf: find_user and find_backend by exact name") {
  Config c;
  c.users.push_back(User{"app", "pw", std::nullopt, std::nullopt});
  c.backends.push_back(Backend{"primary", "127.0.0.1", 5433, 1});
  CHECK(c.find_user("app") == &c.users[0]);
  CHECK(c.find_user("App") == nullptr);
  CHECK(c.find_user("*") == nullptr);  // no wildcard users
  CHECK(c.find_backend("primary") == &c.backends[0]);
  CHECK(c.find_backend("standby") == nullptr);
}

TEST_CASE("conf: to_string and parse_* are inverses") {
  CHECK(std::string(to_string(AuthMethod::ScramSha256)) == "scram-sha-256");
  CHECK(std::string(to_string(AuthMethod::Md5)) == "md5");
  CHECK(std::string(to_string(AuthMethod::Trust)) == "trust");
  CHECK(std::string(to_string(PoolMode::Session)) == "session");
  CHECK(std::string(to_string(PoolMode::Transaction)) == "transaction");
  CHECK(std::string(to_string(PoolMode::Statement)) == "statement");
  CHECK(std::string(to_string(LogLevel::Debug)) == "debug");
  CHECK(std::string(to_string(LogLevel::Info)) == "info");
  CHECK(std::string(to_string(LogLevel::Warn)) == "warn");
  CHECK(std::string(to_string(LogLevel::Error)) == "error");

  for (AuthMethod m : {AuthMethod::ScramSha256, AuthMethod::Md5, AuthMethod::Trust}) {
    CHECK(parse_auth_method(to_string(m)) == m);
  }
  for (PoolMode m : {PoolMode::Session, PoolMode::Transaction, PoolMode::Statement}) {
    CHECK(parse_pool_mode(to_string(m)) == m);
  }
  for (LogLevel l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error}) {
    CHECK(parse_log_level(to_string(l)) == l);
  }
  CHECK_FALSE(parse_auth_method("SCRAM-SHA-256"));
  CHECK_FALSE(parse_auth_method("password"));
  CHECK_FALSE(parse_pool_mode(""));
  CHECK_FALSE(parse_log_level("warning"));
}

TEST_CASE("conf: effective_workers") {
  Config c;
  c.workers = 3;
  CHECK(c.effective_workers() == 3);
  c.workers = 0;
  const unsigned cores = std::thread::hardware_concurrency();
  CHECK(c.effective_workers() == (cores == 0 ? 1 : static_cast<int>(cores)));
  CHECK(c.effective_workers() >= 1);
}

TEST_CASE("conf: effective auth method and pool mode") {
  Config c;
  c.auth_method = AuthMethod::Md5;
  User u{"app", "pw", std::nullopt, std::nullopt};
  CHECK(c.effective_auth_method(u) == AuthMethod::Md5);
  u.auth_method = AuthMethod::Trust;
  CHECK(c.effective_auth_method(u) == AuthMethod::Trust);

  Database d;
  d.pool_mode = PoolMode::Session;
  CHECK(Config::effective_pool_mode(nullptr, d) == PoolMode::Session);
  CHECK(Config::effective_pool_mode(&u, d) == PoolMode::Session);
  u.pool_mode = PoolMode::Transaction;
  CHECK(Config::effective_pool_mode(&u, d) == PoolMode::Transaction);
}

TEST_CASE("conf: password_kind follows PostgreSQL's stored formats") {
  CHECK(password_kind("") == PasswordKind::Plain);
  CHECK(password_kind("app") == PasswordKind::Plain);
  CHECK(password_kind("md5fe63fea7be31b0200b496d08bc6b517d") == PasswordKind::Md5Hash);
  CHECK(password_kind("md5FE63FEA7BE31B0200B496D08BC6B517D") == PasswordKind::Plain);  // upper case
  CHECK(password_kind("md5fe63fea7be31b0200b496d08bc6b517") == PasswordKind::Plain);   // 31 digits
  CHECK(password_kind("md5fe63fea7be31b0200b496d08bc6b517dd") == PasswordKind::Plain);
  CHECK(password_kind("md5ge63fea7be31b0200b496d08bc6b517d") == PasswordKind::Plain);  // 'g'

  const std::string secret =
      "SCRAM-SHA-256$4096:cGdtdXgtdGVzdC1zYWx0IQ==$Ve4NY/D5QM1NtFE3IvjK/Ovbwm9/R2WVKSEvd6zK93U=:"
      "2htVvIIClQsXc8Ymzt3wklLxwBOrjGLrAId8h46ocd0=";
  CHECK(password_kind(secret) == PasswordKind::ScramSecret);
  CHECK(password_kind("SCRAM-SHA-256$") == PasswordKind::Plain);
  CHECK(password_kind("SCRAM-SHA-256$4096:c2FsdA==$abc:def") == PasswordKind::Plain);  // short keys
  CHECK(password_kind("scram-sha-256" + secret.substr(13)) == PasswordKind::Plain);   // prefix is exact
  std::string no_iterations = secret;
  no_iterations.replace(14, 4, "");
  CHECK(password_kind(no_iterations) == PasswordKind::Plain);
  std::string bad_char = secret;
  bad_char[20] = '!';  // inside the salt
  CHECK(password_kind(bad_char) == PasswordKind::Plain);
}
