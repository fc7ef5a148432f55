#include "proxy/control/auth_lookup.hpp"

#include <cmath>

#include "proxy/net/log.hpp"

namespace pgmux::proxy {

namespace {

// pgmux's name in pg_stat_activity for the lookup connection.
constexpr const char* kApplicationName = "pgmux-auth-query";

// The seconds left until VALID UNTIL, as date_part gives them: "Infinity" for 'infinity', null without one.
constexpr const char* kSecondsLeft =
    "pg_catalog.date_part('epoch', u.rolvaliduntil) OPERATOR(pg_catalog.-) pg_catalog.date_part('epoch', "
    "pg_catalog.now())";

std::string quoted(std::string_view identifier) { return '"' + std::string(identifier) + '"'; }

}  // namespace

std::string auth_query_sql(const conf::AuthQuery& settings) {
  std::string sql = "SELECT u.rolpassword, ";
  sql += kSecondsLeft;
  sql += ", u.rolcanlogin FROM ";
  if (settings.function.empty()) {
    sql += "pg_catalog.pg_authid u WHERE u.rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name";
  } else {
    // The config allows only schema.name of plain identifiers: quoting keeps their case as written.
    const size_t dot = settings.function.find('.');
    sql += quoted(std::string_view(settings.function).substr(0, dot)) + '.' +
           quoted(std::string_view(settings.function).substr(dot + 1)) + "($1::pg_catalog.text) u";
  }
  return sql;
}

AuthLookup::AuthLookup(uv_loop_t* loop, AuthCache& cache, TargetFor target_for, conf::AuthQuery settings)
    : loop_(loop), cache_(cache), target_for_(std::move(target_for)) {
  set_settings(std::move(settings));
}

AuthLookup::~AuthLookup() = default;

void AuthLookup::set_settings(conf::AuthQuery settings) {
  if (settings == settings_ && !sql_.empty()) return;
  settings_ = std::move(settings);
  sql_ = auth_query_sql(settings_);
  cache_.clear();
  // A lookup in flight keeps its connection; the next one connects with the new settings (see next()).
}

void AuthLookup::lookup(const std::string& user, Reply reply) {
  auto [it, first] = waiting_.try_emplace(user);
  it->second.push_back(std::move(reply));
  if (!first) return;  // queued or running already
  queue_.push_back(user);
  if (current_.empty()) next();
}

void AuthLookup::next() {
  while (current_.empty() && !queue_.empty()) {
    current_ = queue_.front();
    queue_.pop_front();
    std::optional<ProbeTarget> target = target_for_();
    if (!target) {
      finish(false, "no backend is up to look the role up on");
      continue;
    }
    if (!connection_ || !(connection_->target() == *target)) {
      connection_ = std::make_unique<PgQueryConnection>(loop_, std::move(*target), kApplicationName);
    }
    result_ = AuthRecord{};
    result_.error = "the lookup returned no result";
    auto on_result = [this](const PGresult* r) -> std::string {
      if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return "unexpected result " + std::string(PQresStatus(PQresultStatus(r)));
      if (PQnfields(r) != 3) return "the lookup returned " + std::to_string(PQnfields(r)) + " columns, not 3";
      auto value = [r](int col) -> std::optional<std::string_view> {
        if (PQntuples(r) < 1 || PQgetisnull(r, 0, col)) return std::nullopt;
        return std::string_view(PQgetvalue(r, 0, col), static_cast<size_t>(PQgetlength(r, 0, col)));
      };
      result_ = auth_record_from(PQntuples(r), value(0), value(1), value(2));
      return result_.kind == AuthRecord::Kind::Failed ? result_.error : std::string();
    };
    connection_->start(sql_.c_str(), settings_.timeout, std::move(on_result),
                       [this](bool ok, const std::string& error) { finish(ok, error); }, current_);
  }
}

void AuthLookup::finish(bool ok, const std::string& error) {
  const std::string user = std::move(current_);
  current_.clear();
  AuthRecord record = ok ? result_ : AuthRecord{};
  if (!ok) {
    record.kind = AuthRecord::Kind::Failed;
    record.error = error;
  } else {
    const double now = steady_seconds();
    double ttl = record.kind == AuthRecord::Kind::Role ? settings_.cache_ttl : settings_.negative_cache_ttl;
    if (record.valid_for >= 0) ttl = std::min(ttl, record.valid_for);  // expiry is seen when it comes
    if (ttl > 0) cache_.store(user, record, now + ttl, now);
  }
  answer(user, record);
  next();  // PgQueryConnection allows a new query (even its own destruction) from its done callback
}

void AuthLookup::answer(const std::string& user, const AuthRecord& record) {
  auto node = waiting_.extract(user);
  if (node.empty()) return;
  for (Reply& reply : node.mapped()) reply(record);
}

}  // namespace pgmux::proxy
