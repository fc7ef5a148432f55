// auth_query (conf::AuthQuery): a user the config does not list is looked up in the database. AuthCache keeps
// what lookups found, for every worker, for a time to live; AuthLookup runs the lookups on the control loop, one
// at a time over one connection of its own, and clients asking for the same name at once share one lookup.
//
// What is looked up is PostgreSQL's own record of the role: its stored secret (SCRAM or md5, never plaintext),
// whether it may log in and whether VALID UNTIL has passed. The client then authenticates against that secret
// as against a configured one, and pgmux logs in to the servers with the SCRAM key the client's proof gives
// away (or the md5 hash), so no plaintext password is ever needed.
#pragma once
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <uv.h>

#include "conf/config.hpp"
#include "proxy/control/auth_cache.hpp"
#include "proxy/control/pg_query_connection.hpp"

namespace pgmux::proxy {

// The lookup's SQL; $1 is the role name, sent apart from the text. Every name is schema-qualified and every
// operator spelled OPERATOR(pg_catalog.x), so nothing a search_path finds (a table, function or operator a user
// created in public) can stand in for PostgreSQL's own.
std::string auth_query_sql(const conf::AuthQuery& settings);

// Runs on the control loop.
class AuthLookup {
 public:
  using Reply = std::function<void(const AuthRecord&)>;
  // Where lookups run now (the primary, else a readable standby), logged in as auth_query.user; nullopt: none.
  using TargetFor = std::function<std::optional<ProbeTarget>()>;

  AuthLookup(uv_loop_t* loop, AuthCache& cache, TargetFor target_for, conf::AuthQuery settings);
  ~AuthLookup();
  AuthLookup(const AuthLookup&) = delete;
  AuthLookup& operator=(const AuthLookup&) = delete;

  // Looks `user` up, or joins the lookup of that name queued or running; `reply` runs on this loop. What was
  // found (a role or no role) is cached for cache_ttl / negative_cache_ttl; a failure is not.
  void lookup(const std::string& user, Reply reply);
  // A reload: new settings apply to the next lookup, and the cache, filled under the old ones, is emptied.
  void set_settings(conf::AuthQuery settings);

 private:
  void next();
  void finish(bool ok, const std::string& error);
  void answer(const std::string& user, const AuthRecord& record);

  uv_loop_t* loop_;
  AuthCache& cache_;
  TargetFor target_for_;
  conf::AuthQuery settings_;
  std::string sql_;
  std::unique_ptr<PgQueryConnection> connection_;
  std::deque<std::string> queue_;                      // names not yet looked up, in order
  std::map<std::string, std::vector<Reply>> waiting_;  // by name: every client asking for it
  std::string current_;                                // the name being looked up; "" when idle
  AuthRecord result_;
};

}  // namespace pgmux::proxy
