// What auth_query found about role names (proxy/control/auth_lookup.hpp), kept for every worker for a time to
// live: a login of a user the config does not list reads it first and asks the database only on a miss.
#pragma once
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgmux::proxy {

// What the database says about one role name.
struct AuthRecord {
  enum class Kind { Role, NoRole, Failed };
  Kind kind = Kind::Failed;
  std::string secret;      // rolpassword: "SCRAM-SHA-256$...", "md5...", or "" (no password: cannot log in so)
  bool can_login = false;  // rolcanlogin
  bool expired = false;    // rolvaliduntil has passed
  double valid_for = -1;   // seconds until rolvaliduntil; < 0 without one
  std::string error;       // Failed: why (for the log; the client is not told)
};

// The record of one lookup's result: no row is NoRole; else the columns (rolpassword, seconds until
// rolvaliduntil, rolcanlogin), null where nullopt ("t"/"f" for the boolean).
AuthRecord auth_record_from(int rows, std::optional<std::string_view> password,
                            std::optional<std::string_view> seconds_left, std::optional<std::string_view> can_login);

// Thread-safe: workers read it at every login of an unlisted user, the control loop fills it.
class AuthCache {
 public:
  static constexpr size_t kMaxEntries = 10000;  // client-chosen names: bounded like "*" databases

  // A record stored until a time after `now` (steady-clock seconds).
  std::optional<AuthRecord> find(const std::string& user, double now) const;
  void store(const std::string& user, AuthRecord record, double expires_at, double now);
  void forget(const std::string& user);  // a failed password: the next login asks the database again
  void clear();
  size_t size() const;

 private:
  struct Entry {
    AuthRecord record;
    double expires_at = 0;
  };
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

double steady_seconds();

}  // namespace pgmux::proxy
