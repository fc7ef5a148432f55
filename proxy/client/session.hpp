// What a client session *is*, apart from sockets, servers and time: the session commands to replay on every
// server that serves it, its prepared statements, its routing state (pins, read-your-writes mark, read-only
// default), and the BEGIN pgmux answered itself. A plain value with no libuv, unit-tested on its own
// (tests/unit/proxy_session_test.cpp); ClientConn owns one and applies its verdicts to servers.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/bytes.hpp"
#include "protocol/lru_map.hpp"
#include "proxy/client/request_scanner.hpp"
#include "proxy/client/session_block.hpp"
#include "proxy/server/session_params.hpp"
#include "routing/classifier.hpp"
#include "routing/router.hpp"

namespace pgmux::proxy {

// The settings a statement was parsed under, as far as they decide what it means (routing::affects_statement_analysis:
// TimeZone and DateStyle read its literals, search_path and the role find its tables): the key its shared copies
// are named by (ClientSession::analysis_settings_key, 0 for the servers' defaults) and the commands that bring a
// server there from the client's startup values: the session log's that may change them, then those of the open
// block (its SETs and SET LOCALs). Shared by the statements parsed under the same settings.
struct ParseSettings {
  uint64_t key = 0;
  std::vector<std::string> commands;
};

struct PreparedStatement {
  protocol::ByteVector parse;  // the client's Parse message, to prepare it on another server
  routing::Classification classification;
  std::string server_name;     // transaction pooling: "pgmux_<hash>", the name servers know it by
  bool confirmed = false;      // the request that parsed it finished without an error: it surely exists
  uint64_t shape = 0;          // transaction pooling: its result shape (protocol::result_shape; 0: not known)
  // Transaction pooling: its parameter types as PostgreSQL resolved them at its Parse (the body of the
  // ParameterDescription of the copy that Parse made: an int16 count, then the OIDs; empty: not known yet).
  protocol::ByteVector parameter_types;
  uint64_t parsed_at = 0;      // uv_hrtime() of the client's Parse (transaction pooling: older server copies are
                               // prepared again, see ServerConn::server_statements)
  uint64_t made_by_request = 0;  // the number of the client's request that parsed it (ClientConn::requests_sent_;
                                 // answered here: the last one sent): a DISCARD ALL sent before it leaves it be
  // The settings of its Parse, which a server that lacks it is brought back to while it is prepared there (null:
  // the servers' defaults).
  std::shared_ptr<const ParseSettings> settings;
  uint64_t settings_key() const { return settings ? settings->key : 0; }
};

// Transaction pooling: a statement whose Parse left parameter types for the server to infer, once those types are
// known, is prepared on other servers with them spelled out in its Parse (and under that Parse's shared name):
// a copy made after DDL would infer others (an ALTER COLUMN ... TYPE), and a binary parameter of the old type
// would be misread. PostgreSQL fixes a statement's parameter types at its Parse. True when `stored` changed.
bool pin_parameter_types(PreparedStatement& stored);

// How the session log changed when a command was recorded: what the server that ran it has applied, and
// whether every other server must replay the log from its start.
struct LogUpdate {
  size_t runner_applied = 0;
  bool others_restart = false;
  bool state_unknown = false;  // what the log replays would differ from the session (ClientSession::record_command)
};

// Heterogeneous lookup: a statement name from a message (a string_view) finds its entry without a copy.
using StatementMap =
    std::unordered_map<std::string, PreparedStatement, protocol::TransparentStringHash, std::equal_to<>>;

// The statement ClientSession::find_statement found last: a batch names its statements several times on its way
// (routing, preparing, renaming), and comparing the name once costs less than hashing it each time. It points
// into its session's own map, so a copy starts empty and a move leaves both sides empty; erasing from that map
// goes through ClientSession::erase_statement.
class LastFoundStatement {
 public:
  LastFoundStatement() = default;
  LastFoundStatement(const LastFoundStatement&) noexcept {}
  LastFoundStatement(LastFoundStatement&& other) noexcept { other.entry_ = nullptr; }
  LastFoundStatement& operator=(const LastFoundStatement&) noexcept {
    entry_ = nullptr;
    return *this;
  }
  LastFoundStatement& operator=(LastFoundStatement&& other) noexcept {
    entry_ = other.entry_ = nullptr;
    return *this;
  }
  const StatementMap::value_type* get(std::string_view name) const {
    return entry_ != nullptr && entry_->first == name ? entry_ : nullptr;
  }
  void set(const StatementMap::value_type* entry) { entry_ = entry; }
  void forget() { entry_ = nullptr; }

 private:
  const StatementMap::value_type* entry_ = nullptr;
};

// An SQL-level prepared statement (transaction pooling), prepared on a server when a request there names it.
struct SqlStatement {
  std::string prepare;          // the client's PREPARE statement
  size_t log_at = 0;            // the session log's size when it was prepared: the settings it was analyzed with
  uint64_t log_generation = 0;  // ClientSession::log_generation then (a restarted log loses that position)
  // What pgmux runs to prepare it on another server: the PREPARE with the parameter types PostgreSQL fixed spelled
  // out, for one that left them to infer (read right after it ran: ClientConn::capture_prepare_types). Empty: the
  // PREPARE as the client wrote it (it lists them, has none, or they could not be read).
  std::string typed_prepare;
  const std::string& to_replay() const { return typed_prepare.empty() ? prepare : typed_prepare; }
};

// SQL PREPAREd statements by name. Few sessions have any: the map is made with the first, and every other client
// holds one pointer rather than an empty std::unordered_map (56 bytes of each idle client).
class SqlStatements {
 public:
  using Map = std::unordered_map<std::string, SqlStatement>;
  SqlStatements() = default;
  SqlStatements(const SqlStatements& other) : map_(other.map_ ? std::make_unique<Map>(*other.map_) : nullptr) {}
  SqlStatements& operator=(const SqlStatements& other) {
    if (this != &other) map_ = other.map_ ? std::make_unique<Map>(*other.map_) : nullptr;
    return *this;
  }
  SqlStatements(SqlStatements&&) noexcept = default;
  SqlStatements& operator=(SqlStatements&&) noexcept = default;

  bool empty() const { return !map_ || map_->empty(); }
  size_t size() const { return map_ ? map_->size() : 0; }
  bool contains(const std::string& name) const { return map_ && map_->contains(name); }
  SqlStatement* find(const std::string& name) {
    if (!map_) return nullptr;
    const auto it = map_->find(name);
    return it == map_->end() ? nullptr : &it->second;
  }
  SqlStatement& operator[](const std::string& name) {
    if (!map_) map_ = std::make_unique<Map>();
    return (*map_)[name];
  }
  void erase(const std::string& name) {
    if (map_) map_->erase(name);
  }
  void clear() { map_.reset(); }
  template <typename Visit>
  void for_each_name(Visit&& visit) const {
    if (!map_) return;
    for (const auto& entry : *map_) visit(entry.first);
  }

 private:
  std::unique_ptr<Map> map_;
};

struct ClientSession {
  SessionParams wanted_params;  // startup parameters (options=-c included): the session's defaults
  // Session commands that last (SET/RESET/set_config/..., run outside a block or in one that committed),
  // replayed in order on any other server.
  std::vector<std::string> log;
  uint64_t log_generation = 0;  // counts the log's restarts (RESET ALL, DISCARD ALL)
  // The settings that decide what a statement parsed now means (routing::affects_statement_analysis), from the
  // startup parameters and the log, as a hash: 0 for none. Transaction pooling shares a statement's server copy
  // only among sessions with the same key (another TimeZone reads '2024-01-01'::timestamptz otherwise, another
  // search_path finds other tables).
  uint64_t analysis_settings_key() const {
    const TextFacts& facts = text_facts();
    return facts.settings ? facts.settings->key : 0;
  }
  // The settings a statement parsed now is analyzed under: the startup parameters' and the log's, then those the open
  // block changed (SessionBlock::analysis_commands). Null: the servers' defaults. An allocation only in such a block.
  std::shared_ptr<const ParseSettings> parse_settings() const;
  uint64_t parse_settings_key() const;
  // Text the lexer cannot read (Classification::unreadable) may hide statements for this session: its client
  // encoding or standard_conforming_strings (routing::lexer_may_misread) as the server reported them at login (a
  // startup option, a role's or database's default), or a statement since that may have changed either
  // (routing::may_change_text_reading: in a block, SET LOCAL, behind a Parse of the same batch, failed or not).
  // Never cleared: the worst is assumed.
  bool lexer_may_misread() const { return misread_noted; }
  SessionBlock block;      // session commands waiting for their transaction block to end
  routing::ClientRouteState route;
  // A BEGIN answered by pgmux, then the SET TRANSACTIONs it answered behind it: each its own Query, sent with the
  // next statement (empty: none held).
  std::vector<std::string> deferred_begin;
  routing::Classification deferred_begin_class;  // ... its class (READ ONLY, isolation), the SETs' modes merged
  // Transaction pooling: the client's SQL-level prepared statements (PREPARE name AS ...) by name as PostgreSQL
  // folds it, each with its PREPARE statement, prepared on a server when a request there names it
  // (client_sql_statements.cpp).
  SqlStatements sql_statements;
  // WITH HOLD cursors declared on the standby connection (in a read-only block running there), by folded name: the
  // statements naming them go there (client_standby_cursors.cpp). Usually empty.
  std::vector<std::string> standby_hold_cursors;
  // Portals a request bound that no request has executed yet, with their statement's text: an Execute in a later
  // request runs that statement (client_portals.cpp). Portals end with their transaction. Usually empty.
  struct BoundPortal {
    std::string name;
    std::string statement;
    uint64_t request = 0;  // the request that bound it (ClientConn::requests_sent_)
  };
  LazyVector<BoundPortal> bound_portals;
  const char* pin_reason = nullptr;        // transaction pooling: why this client keeps its server
  bool pin_logged = false;
  char tx_status = 'I';  // the transaction status the client's last finished request left
  bool misread_noted = false;  // lexer_may_misread (above)
  // pgmux answered an error itself inside the deferred BEGIN's block (ClientConn::answer_locally_with_error): a
  // statement that fails goes out behind the BEGIN, so that PostgreSQL fails the block too and answers what follows.
  bool deferred_begin_failed = false;

  // The deferred BEGIN went out (and the failing statement behind it, if any).
  void deferred_begin_sent() {
    deferred_begin.clear();
    deferred_begin_failed = false;
  }

  // A session command `sql` (classified as `c`) succeeded outside a transaction. In transaction pooling servers
  // are shared, so a RESET of a startup parameter (or RESET ALL) must land on the client's own startup values:
  // the log records the SET that does so. RESET ALL and DISCARD ALL restart the log (it stays short, and a
  // server that ran older entries runs the reset too).
  // reset_parameter: what Classifier::reset_parameter reads in `sql` (a RESET of one parameter).
  LogUpdate record_command(std::string sql, const routing::Classification& c, std::string_view reset_parameter,
                           bool transaction_pooling);
  // Records commands that now last, in order, run by a server that had applied `runner_applied` entries: what
  // that server has applied afterwards, and whether the others restart. DISCARD ALL makes the session known again.
  LogUpdate record_lasting(std::vector<TrackedStatement> lasting, size_t runner_applied, bool transaction_pooling);
  // Session pooling: the log's PREPARE of statement `name` (its latest) spells out `types`, read behind it
  // (ClientConn::capture_prepare_types), when it lists none and is not among the first `replayed` entries.
  void type_logged_prepare(const std::string& name, std::string_view types, size_t replayed);
  // The default isolation level the session starts with (a startup parameter) is SERIALIZABLE.
  bool starts_serializable() const;
  // ... and the one RESET returns to: the startup parameter's, else the servers' default for the session.
  bool resets_to_serializable() const;
  // What a session command that now lasts makes of the default isolation level (route.serializable_default).
  void note_isolation_default(const routing::Classification& c, std::string_view reset_parameter);

  // A named statement parsed by the client: kept (message and class) to prepare it on another server.
  // `shared_name`: under a name servers share (transaction pooling).
  PreparedStatement& remember(const ParsedStatement& parse, const routing::Classification& c, bool shared_name,
                              uint64_t now_ns, uint64_t request);
  const PreparedStatement* find_statement(std::string_view name) const;
  PreparedStatement* find_statement(std::string_view name);
  void erase_statement(std::string_view name);  // a Close of it
  // A Close of it, which an error earlier in its batch may yet make PostgreSQL skip: the entry, to put back
  // (restore_statement: unless one of that name was parsed since, or a DISCARD ALL / DEALLOCATE ALL dropped it).
  std::optional<PreparedStatement> take_statement(std::string_view name);
  void restore_statement(std::string_view name, PreparedStatement&& statement);
  // The client's name of the statement servers know as `server_name` (transaction pooling); null if none. A walk
  // over the statements: for an error message, not the hot path.
  const std::string* name_of_server_statement(std::string_view server_name) const;
  void clear_statements_before(uint64_t request);  // DISCARD ALL, DEALLOCATE ALL: those made by earlier requests
  size_t statement_count() const { return statements_.size(); }

 private:
  StatementMap statements_;  // by the client's name; changed only by the statement functions above
  uint64_t cleared_before_ = 0;  // the last clear_statements_before's request: older statements are not restored
  mutable LastFoundStatement last_found_;
  // What the startup parameters and the log say of how the session's statements are analyzed, for the log as it
  // was then (its generation and size; the startup parameters never change).
  struct TextFacts {
    uint64_t generation = ~uint64_t{0};
    size_t log_size = 0;
    std::shared_ptr<const ParseSettings> settings;  // the key and commands; null for the servers' defaults (key 0)
  };
  const TextFacts& text_facts() const;
  mutable TextFacts text_facts_;
};

}  // namespace pgmux::proxy
