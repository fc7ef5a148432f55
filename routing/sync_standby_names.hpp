// synchronous_standby_names as PostgreSQL reads it (syncrep_gram.y): "FIRST n (a, b)", "ANY n (a, b)", "n (a, b)"
// (FIRST), or a bare list "a, b" (FIRST 1). Names may be double-quoted; "*" matches any standby; PostgreSQL compares
// names with application_name ignoring case.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::routing {

struct SyncStandbyNames {
  bool quorum = false;  // ANY
  int num_sync = 1;
  std::vector<std::string> names;  // as written, unquoted

  // Every commit waits for every listed standby: as many required as there are names, none of them "*". Then a
  // commit with synchronous_commit remote_apply returns only after each of them applied it, whichever connects.
  bool all_required() const;
  bool lists(std::string_view application_name) const;  // ignoring case, as PostgreSQL does
};

// nullopt for an empty or malformed setting (PostgreSQL refuses the latter, so it is never in effect).
std::optional<SyncStandbyNames> parse_sync_standby_names(std::string_view text);

// The text names a setting that decides whether a commit waits for the standbys that apply every commit and
// says so: synchronous_commit, or client_min_messages (above warning it hides PostgreSQL's warning that the wait
// was cancelled). Any case, anywhere: a SET, a set_config argument, a startup parameter, a comment. Statements
// that set parameters are rare; a false positive only costs the session the standbys that apply every commit.
bool names_commit_wait_setting(std::string_view sql);

}  // namespace pgmux::routing
