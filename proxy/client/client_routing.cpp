// ClientConn, where a request goes: its class, the server it is routed to (or waits for), and the request that
// resumes once that server is ready.
#include "proxy/client/client_conn.hpp"

#include <algorithm>

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/control/control.hpp"
#include "proxy/control/prober.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"
#include "routing/read_your_writes.hpp"
#include "routing/session_sql.hpp"

namespace pgmux::proxy {

using namespace protocol;

routing::Classification ClientConn::classify_sql(std::string_view sql) {
  return worker_.classifier().classify(sql, catalog_.state());
}

// Made with another catalog than the one now (or while it was reloading), a stored class is made again from the
// statement's text; it is kept until the catalog changes again.
routing::Classification ClientConn::stored_class(PreparedStatement& stored, const routing::CatalogState& catalog) {
  if (stored.classification.catalog_stamp == catalog.stamp()) return stored.classification;
  const ByteView message(stored.parse);
  if (auto parse = message.size() >= kFrameHeaderSize ? parse_parse(message.subspan(kFrameHeaderSize)) : std::nullopt) {
    stored.classification = worker_.classifier().classify(parse->sql, catalog);
  }
  return stored.classification;
}

// The unnamed statement's text is not kept: made with another catalog, a read counts as a write.
routing::Classification ClientConn::unnamed_class(const routing::CatalogState& catalog) const {
  routing::Classification c = unnamed_.classification();
  if (c.catalog_stamp != catalog.stamp() && c.kind == routing::StatementKind::Read) {
    c.kind = routing::StatementKind::Write;
    c.reason = "unnamed statement of another function catalog";
  }
  return c;
}

routing::Classification ClientConn::classify_request() {
  routing::Classification c = classify_request_texts();  // returned in place: this runs per request
  note_text_reading(c);
  read_as_session_does(c);
  return c;
}

// A request that may set standard_conforming_strings or the client encoding: from now on (its own later
// statements included) the session may read text otherwise than the lexer's standard reading, whatever it set
// and whether or not it lasts. Only requests with such effects look at their text.
void ClientConn::note_text_reading(const routing::Classification& c) {
  using routing::SessionEffect;
  if (session_.misread_noted) return;
  if (!c.effects.has(SessionEffect::Set) && !c.effects.has(SessionEffect::SetLocal) &&
      !c.effects.has(SessionEffect::SetConfig) && !c.effects.has(SessionEffect::Reset) &&
      !c.effects.has(SessionEffect::Opaque)) {  // a DO block's set_config is in its text too
    return;
  }
  if (request_.kind == RequestKind::Query) {
    session_.misread_noted = routing::may_change_text_reading(request_.sql);
    return;
  }
  session_.misread_noted = std::any_of(request_.parses.begin(), request_.parses.end(), [](const ParsedStatement& p) {
    return routing::may_change_text_reading(p.sql);
  });
}

// Text the lexer could not read, in a session whose settings let the server read it otherwise
// (standard_conforming_strings off, an SJIS-like client encoding): statements may hide in it, as in a DO block, and
// a write among them. What the standard reading made of it (its statements, their effects and pins) does not hold:
// it is one opaque write. (Other sessions read it as the classifier did.)
void ClientConn::read_as_session_does(routing::Classification& c) const {
  if (!c.unreadable || !session_.lexer_may_misread()) return;
  routing::Classification opaque;
  opaque.kind = routing::StatementKind::Write;
  opaque.reason = "text this session's settings may read otherwise";
  opaque.unreadable = true;
  opaque.primary_hint = c.primary_hint;
  opaque.catalog_stamp = c.catalog_stamp;
  opaque.effects.add(routing::SessionEffect::Opaque);
  c = opaque;
}

routing::Classification ClientConn::classify_request_texts() {
  routing::Classifier& classifier = worker_.classifier();
  const routing::CatalogState catalog = catalog_.state();
  routing::Classification result;
  switch (request_.kind) {
    case RequestKind::Query:
      return classifier.classify(request_.sql, catalog);
    case RequestKind::FunctionCall:
      return routing::classify_function_call(request_.function_oid);
    default:
      break;
  }
  // An extended batch: the strictest class of every statement it parses or uses.
  bool any = false;
  auto merge = [&](const routing::Classification& c) {
    // A write beside a session command (SHOW, SET) gives the batch its class: its commit starts read-your-writes.
    const bool stricter = (routing::is_read_only_statement(result, session_.route) &&
                           !routing::is_read_only_statement(c, session_.route)) ||
                          (result.kind == routing::StatementKind::Session && c.kind == routing::StatementKind::Write);
    if (!any || stricter) {
      const routing::Classification earlier = result;
      result = c;
      result.add_facts(earlier);  // hints, pins and session effects hold for the whole batch
    } else {
      result.add_facts(c);
    }
    any = true;
  };
  for (const auto& parse : request_.parses) {
    const routing::Classification c = classifier.classify(parse.sql, catalog);
    if (parse.name.empty()) request_unnamed_class_ = c;  // the statement's once the Parse ran (UnnamedStatement)
    merge(c);
  }
  // Bind/Execute of the unnamed statement parsed by an earlier batch runs that statement: its class, so a write
  // executed this way still counts for read-your-writes.
  if (request_.uses_prior_unnamed) merge(unnamed_class(catalog));
  for (auto name : request_.used) {
    if (PreparedStatement* stored = session_.find_statement(name)) merge(stored_class(*stored, catalog));
  }
  if (!session_.bound_portals.empty()) {  // rare: no std::function (nor its allocation) for the usual request
    for_each_earlier_portal_run([&](const std::string& text) { merge(classifier.classify(text, catalog)); });
  }
  if (!any) {
    result.kind = routing::StatementKind::Empty;  // Sync, Flush, portal ops: where the client's state is
    result.reason = "no statement";
  }
  return result;
}

// The request waited for its server (or for pgmux to bring it up to date): it goes on with the decision made
// when it was routed.
bool ClientConn::resume_routed() {
  RoutedRequest routed = std::move(*routed_);
  routed_.reset();
  ServerConn* server = slot_for(routed.role);
  const protocol::StandbyRefusal refusal =
      prepare_error_.empty() || server != standby_.get() || server->tx_status() != 'I'
          ? protocol::StandbyRefusal::None
          : refusal_of(prepare_error_);
  if (refusal == protocol::StandbyRefusal::Serializable ||
      (refusal == protocol::StandbyRefusal::RecoveryConflict && primary_takes_reads())) {
    // What pgmux prepared for the request was refused for the session's default isolation level, or canceled for
    // the standby's replay: the request has not run, and is routed again, to the primary now.
    if (refusal == protocol::StandbyRefusal::Serializable) learn_serializable_default(*server);
    session_.route.rerun_after_recovery_conflict = refusal == protocol::StandbyRefusal::RecoveryConflict;
    prepare_error_.clear();
    return dispatch();
  }
  if (!prepare_error_.empty()) {
    // A statement this request uses could not be prepared there: the request gets that error, as it would
    // have from PostgreSQL at Parse. It failed on that server as if it had run there: inside a transaction
    // (aborted by the failure), the client's next requests go there too, not wherever routing would send them.
    if (server) make_active(server);
    fail(FailureReport::relayed_whole(Failure::PrepareFailed, prepare_error_));
    prepare_error_.clear();
    release_idle_servers();
    return open();
  }
  primary_wait_ = {};  // a failover wait, if any, is over (the request goes out, to the primary or a standby)
  if (routed.route) {
    worker_.metrics().count_route(*routed.route);
    if (routing::is_read_only_statement(routed.c, session_.route) && !routed.c.read_needs_primary()) {
      ++server->pool().stats.reads;
    }
  }
  if (!routed.prepared && !prepare(server, routed.c)) return false;
  forward(server, routed.c);
  return open() && !pinned();
}

// What the router knows of the session's standby connection: its backend, and whether its WITH HOLD cursors keep
// reads it cannot take off other standbys (routing::RouteReason::StandbyCursors; without a primary for them they go
// to another standby, and the cursors with the connection given back: drop_server). Here, beside choose_server,
// which runs it per request: in one file the compiler inlines it.
void ClientConn::describe_held_standby(routing::ClientRouteState& state) const {
  state.held_standby = static_cast<int16_t>(standby_ ? standby_->backend_index() : -1);
  state.held_standby_keeps_cursors = standby_ && !session_.standby_hold_cursors.empty();
}

// The server this request must follow, before any routing: the one running its block or owing replies it must
// come after, the holder of the unnamed statement it uses, the standby connection with the WITH HOLD cursor it
// names. Null inside: it must wait (Draining) for replies owed. Nullopt: route it.
std::optional<ServerConn*> ClientConn::server_to_follow(const routing::Classification& c, bool read_only) {
  if (request_.uses_prior_unnamed && !unnamed_.settled()) {
    // An earlier request parsed or closed the unnamed statement, and an error before that message (in a batch
    // already ended by Sync) would have left the previous one in place: only its reply tells which one this
    // request uses. Not when the request continues an extended sequence left open (Flush): that sequence ends
    // only with this request's Sync, so waiting would hang, and an error earlier in it skips this request anyway.
    // (Had it nothing owed, no reply would tell: a guard, it cannot wait for ever.)
    if (active_ && active_->has_outstanding()) {
      if (!active_->awaits_sync()) {
        set_state(ClientState::Draining);
        return nullptr;
      }
    } else {
      unnamed_.drop_unanswered();
    }
  }
  if (active_ && (active_->has_outstanding() || active_->tx_status() != 'I')) {  // follow replies owed, a block
    if (active_ == standby_ && !read_only && active_->has_outstanding() && !active_->awaits_sync()) {
      // A write behind a standby's requests, its block's COMMIT perhaps among them: only their replies tell whether
      // the write runs in that read-only block (and fails there, as on PostgreSQL) or after it, on the primary.
      set_state(ClientState::Draining);
      return nullptr;
    }
    if (active_->tx_status() != 'I' || active_->awaits_sync()) return active_;
    if (ServerConn* holder = standby_cursor_server(c); holder && holder != active_) {
      set_state(ClientState::Draining);  // its cursor is on the standby: after the replies owed here
      return nullptr;
    }
    // (`read_only` leaves out reads that need the primary: a sequence a Flush opens, which may write before its
    // Sync, waits here for the standby's replies.)
    if (active_ == primary_ || read_only) return active_;
    set_state(ClientState::Draining);  // a write behind reads pipelined to a standby: let the standby finish first
    return nullptr;
  }
  if (request_.uses_prior_unnamed) {
    // Bind or Describe of the unnamed statement parsed by an earlier request: the server that parsed it has it;
    // another one gets its Parse first (prepare), if pgmux kept it. Without one, the server answers 26000 in its
    // place in the batch (hides_unnamed_close). A read on a standby is routed afresh when a copy is kept: since
    // the Parse, a commit it must see may have come that the standby has not applied yet (read-your-writes).
    ServerConn* holder = unnamed_.server();
    if (holder && (holder == primary_.get() || unnamed_.parse().empty())) return holder;
  }
  // (Not a sequence a Flush opens on the standby: what follows it up to its Sync may write, on that same server.)
  if (c.kind == routing::StatementKind::Empty && active_ && (!c.opens_sequence || active_ == primary_)) return active_;
  if (ServerConn* holder = standby_cursor_server(c)) return holder;
  return std::nullopt;
}

// Picks (or waits for) the server this request goes to. Returns null when the request must wait; the wait
// is the client's state, and whatever ends it pumps again.
ServerConn* ClientConn::choose_server(const routing::Classification& c) {
  const routing::BackendsView& view = worker_.view();
  const bool read_only = routing::is_read_only_statement(c, session_.route) && !c.read_needs_primary();

  // (Each rule of server_to_follow needs one of these: most requests of transaction pooling meet none, and skip
  // the call.)
  if (active_ || request_.uses_prior_unnamed || !session_.standby_hold_cursors.empty()) {
    if (const std::optional<ServerConn*> followed = server_to_follow(c, read_only)) return *followed;
  }
  describe_held_standby(session_.route);
  session_.route.cluster_commit = replay_wait_ ? replay_wait_->cluster_commit : worker_.shared().commits.latest();
  const routing::RouteSettings settings = route_settings();
  // (Taken afresh while a read waits: later such commits only ask more of the standbys that apply every commit.)
  session_.route.cluster_unapplied_commit =
      settings.remote_apply_reads ? worker_.shared().commits.latest_unapplied().value_or(0) : 0;
  routing::Route route = routing::route_statement(c, session_.route, view, settings, worker_.balancer());
  session_.route.rerun_after_recovery_conflict = false;  // for the one read that runs again
  if (routing::held_for_replay(route) && wait_for_replay()) return nullptr;
  replay_wait_.reset();
  switch (route.target) {
    case routing::RouteTarget::Primary: {
      if (primary_ && primary_->backend_index() == route.backend) {
        primary_wait_ = {};
        worker_.metrics().count_route(route);  // counted once, when the request is about to go out
        if (read_only) ++primary_->pool().stats.reads;
        return primary_;
      }
      drop_server(primary_, Failure::PrimaryMoved);  // a former primary: its session must not carry on
      routed_ = RoutedRequest{c, Role::Primary, route, false};
      acquire(route.backend, Role::Primary);
      return nullptr;
    }
    case routing::RouteTarget::Standby: {
      if (standby_ && standby_->backend_index() == route.backend) {
        primary_wait_ = {};
        worker_.metrics().count_route(route);
        ++standby_->pool().stats.reads;
        return standby_;
      }
      drop_server(standby_);
      route = standby_with_room(c, route, settings);
      routed_ = RoutedRequest{c, Role::Standby, route, false};
      acquire(route.backend, Role::Standby);
      return nullptr;
    }
    case routing::RouteTarget::WaitForPrimary:
      wait_for_primary(route);
      return nullptr;
    case routing::RouteTarget::NoBackend:
      worker_.metrics().count_route(route);
      fail({Failure::NoStandbyNoFallback, {routing::to_string(route.reason)}});
      return nullptr;
  }
  return nullptr;
}

// A read the balancer sent to a standby whose pool would make it wait (no idle server and no room for another) goes
// to another standby it may use whose pool would not, if there is one: else a read could wait query_wait_timeout
// behind a long transaction on one standby while the other stands idle. The weights hold while pools have room.
routing::Route ClientConn::standby_with_room(const routing::Classification& c, const routing::Route& picked,
                                             const routing::RouteSettings& settings) {
  const auto would_wait = [this](int backend) {
    std::optional<FailureReport> no_pool;
    const Pool* pool = pool_of(backend, Role::Standby, &no_pool);
    return !pool || pool->would_queue();  // no pool (its backend cannot be reached): no better place
  };
  if (!would_wait(picked.backend)) return picked;
  routing::ClientRouteState others = session_.route;
  routing::Route route = picked;
  // Each try takes one more standby out of the set; the last one's pool is the one acquire() asks.
  for (size_t tries = 0; tries < 64 && route.target == routing::RouteTarget::Standby && route.backend < 64 &&
                         would_wait(route.backend);
       ++tries) {
    others.backend_mask &= ~(uint64_t{1} << route.backend);
    others.held_standby = -1;
    route = routing::route_statement(c, others, worker_.view(), settings, worker_.balancer());
  }
  return route.target == routing::RouteTarget::Standby && !would_wait(route.backend) ? route : picked;
}

// No primary right now (failover): the request waits for one up to failover_timeout, unless no backend of the
// database is reachable at all; then, or once the time is up, it gets 57P03.
void ClientConn::wait_for_primary(const routing::Route& route) {
  const routing::BackendsView& view = worker_.view();
  bool any_up = false;
  for (size_t i = 0; i < view.backends.size(); ++i) {
    // Not probed yet (pgmux just started): possibly up, so wait for the prober rather than fail.
    const routing::BackendStatus& backend = view.backends[i];
    any_up |= ((session_.route.backend_mask >> i) & 1) &&
              (backend.reachable || (!backend.ever_probed && backend.failed_probes == 0));
  }
  const double now = monotonic_now();
  const double failover_timeout = worker_.config()->routing.failover_timeout;
  if (primary_wait_.since == 0) primary_wait_.since = now;
  if (any_up && now < primary_wait_.since + failover_timeout) {
    set_state(logged_in() ? ClientState::PrimaryWait : ClientState::LoginPrimaryWait);
    worker_.wait_for_primary(this);  // again, when woken into the same wait (a login)
    return;
  }
  primary_wait_ = {};
  if (logged_in()) worker_.metrics().count_route(route);  // a statement's route; a login's is not one
  fail(any_up
           ? FailureReport(Failure::NoPrimaryInTime, {format_seconds(failover_timeout), view.alarm})
           : FailureReport(Failure::NoBackendReachable, {database_, view.alarm}));
}

// A new connection to the primary failed the way a primary that is going away fails it (refused, reset, timed
// out, "shutting down"): every backend is probed at once, and the request waits for a primary, up to
// failover_timeout from its first such failure (wait_for_primary), instead of failing; a login goes through a
// standby with the read/write split on, else waits likewise. False: the failure is the client's to hear.
bool ClientConn::hold_for_failover(const FailureReport& failure, const std::optional<routing::Route>& route,
                                   int failed_backend) {
  if (!primary_unreachable(failure) || worker_.config()->routing.failover_timeout <= 0) return false;
  // Once per wait at INFO: while the primary is going away the request may come back here a few times.
  PGMUX_LOG(primary_wait_.since == 0 ? conf::LogLevel::Info : conf::LogLevel::Debug,
            "%s: the primary's pool could not open a connection (%s); probing every backend now and holding the %s",
            log_prefix().c_str(), failure.message().c_str(), logged_in() ? "request" : "login");
  // Before the round is asked for: a probe the control thread sends at once must count as after the failure.
  primary_wait_.failed_at = monotonic_now();
  primary_wait_.failed_backend = failed_backend;
  worker_.shared().control->request_probe_round();
  if (!logged_in()) {
    // With the split on, a standby may serve the session meanwhile (README: its pid is then the standby's).
    if (worker_.config()->routing.read_write_split) return login_through_standby();
    // Nothing of the database known to be up (pgmux just started, every backend down): no failover to wait for,
    // and the failure is the client's to hear (the login went to the first backend, login_target).
    if (worker_.view().primary < 0 && !login_target().awaits_primary) return false;
    wait_for_primary(routing::Route{routing::RouteTarget::WaitForPrimary, -1, routing::RouteReason::SplitOff});
    return true;
  }
  resume_requests();
  wait_for_primary(route.value_or(routing::Route{routing::RouteTarget::WaitForPrimary, -1,
                                                 routing::RouteReason::Write}));
  return true;
}

// Whether a request or login waiting for a primary tries one now. Not while the view still names the primary whose
// new connection failed last and no probe sent since has reached it (hold_for_failover asked for a round): each try
// would be one more connection refused, or a backend forked to answer 57P03, per waiting client per view and tick
// (a primary in crash recovery took 1,361 connection attempts from 50 held logins in 2 s). Past the wait's end,
// the try comes, to fail it.
bool ClientConn::primary_worth_trying() const {
  const routing::BackendsView& view = worker_.view();
  if (primary_wait_.failed_at == 0 || view.primary < 0 || view.primary != primary_wait_.failed_backend ||
      static_cast<size_t>(view.primary) >= view.backends.size()) {
    return true;
  }
  if (monotonic_now() >= primary_wait_.since + worker_.config()->routing.failover_timeout) return true;
  return view.backends[static_cast<size_t>(view.primary)].last.sent_at > primary_wait_.failed_at;
}

// A read routed to a standby that would not take a connection (stopping, restarting, unreachable: the pool told
// the prober, which takes it out of the read set), or that refused this role's login where the primary took it
// (the role's CONNECTION LIMIT reached there, that node's pg_hba.conf, its max_connections: the prober, logging in
// as another role, keeps it in the read set), never reached a server: it runs on the primary instead, as a read with
// no standby eligible does, unless routing.fallback_to_primary is off. True when it went there.
bool ClientConn::read_on_primary_instead(const FailureReport& failure) {
  const int primary = worker_.view().primary;
  if (!routed_ || !logged_in() || !(primary_unreachable(failure) || login_refused_for_role(failure)) || primary < 0 ||
      !((session_.route.backend_mask >> primary) & 1) || !worker_.config()->routing.fallback_to_primary) {
    return false;
  }
  LOG_INFO("%s: a standby's pool could not open a connection (%s); the read goes to the primary", log_prefix().c_str(),
           failure.message().c_str());
  routed_->role = Role::Primary;
  routed_->route = routing::Route{routing::RouteTarget::Primary, primary, routing::RouteReason::NoEligibleStandby};
  if (primary_ && primary_->backend_index() == primary) {  // held already (session pooling): go on with it
    resume_requests();
    pump();
    return true;
  }
  acquire(primary, Role::Primary);
  return true;
}

// What a primary that is stopping, crashed or unreachable answers a new connection with.
bool ClientConn::primary_unreachable(const FailureReport& failure) {
  switch (failure.failure()) {
    case Failure::ServerConnectFailed:
    case Failure::ServerConnectRefused:
    case Failure::ServerConnectTimeout:
    case Failure::ServerClosedDuringLogin:
    case Failure::BackendUnresolvable:  // a host name the prober has not resolved yet (just started, DNS down)
      return true;
    case Failure::ServerLoginRefused:  // 57P03: the database system is shutting down / starting up
      return failure.sqlstate() == sqlstate::kCannotConnectNow;
    default:
      return false;
  }
}

// A login a server refused for who logs in, or for its room, not for being down: 28xxx (pg_hba.conf, an
// authentication method of that node), 53300 (the role's CONNECTION LIMIT, max_connections).
bool ClientConn::login_refused_for_role(const FailureReport& failure) {
  const std::string_view code = failure.sqlstate();
  return failure.failure() == Failure::ServerLoginRefused &&
         (code.starts_with("28") || code == sqlstate::kTooManyConnections);
}

// Logging in needs a server's ParameterStatus set, which a standby gives as well as the primary.
bool ClientConn::login_through_standby() {
  const routing::BackendsView& view = worker_.view();
  int chosen = -1;
  for (size_t i = 0; i < view.backends.size() && i < 64; ++i) {
    if (((session_.route.backend_mask >> i) & 1) && view.backends[i].readable &&
        view.backends[i].role == routing::Role::Standby) {
      // One whose pool has room, if any: logins through a full one waited query_wait_timeout for 53300 while
      // another standby stood idle.
      std::optional<FailureReport> no_pool;
      const Pool* pool = pool_of(static_cast<int>(i), Role::Standby, &no_pool);
      const bool room = pool && !pool->would_queue();
      if (chosen < 0 || room) chosen = static_cast<int>(i);
      if (room) break;
    }
  }
  if (chosen < 0) return false;
  acquire(chosen, Role::Standby);
  return true;
}

// A read that only a standby's replay keeps off the standbys waits for it, up to routing.causal_wait, rather than
// load the primary. Every new view wakes it (the replay poller publishes one per position that moved), and the
// worker's timer at the deadline; then it is routed again, to whatever is eligible (the primary at the end).
bool ClientConn::wait_for_replay() {
  const double now = monotonic_now();
  if (!replay_wait_) {
    const double wait = worker_.config()->routing.causal_wait;
    if (wait <= 0) return false;
    replay_wait_ = ReplayWait{now + wait, session_.route.cluster_commit};
  }
  if (now >= replay_wait_->deadline) return false;
  set_state(ClientState::ReplayWait);
  return true;
}

// From the worker's current config, not the login snapshot: a reload applies to connected clients.
routing::RouteSettings ClientConn::route_settings() const { return route_settings_of(worker_.config()->routing); }

void ClientConn::on_view_changed() {
  if (state_ == ClientState::ServerEnding) {
    decide_server_ending();
    return;
  }
  if ((state_ == ClientState::LoginPrimaryWait || state_ == ClientState::PrimaryWait) && !primary_worth_trying()) {
    worker_.wait_for_primary(this);  // woken again by the next view (or tick)
    return;
  }
  if (state_ == ClientState::LoginPrimaryWait) {
    log_in_through(login_target());  // the primary's pool, or waiting on (failing past failover_timeout)
    return;
  }
  if (state_ != ClientState::PrimaryWait && state_ != ClientState::ReplayWait) return;
  resume_requests();  // routed again with the new view
  pump();
  // The read that waited was routed (or failed): its horizon must not outlive it.
  if (state_ != ClientState::ReplayWait) replay_wait_.reset();
}

// A request of a session whose database's function catalog has not loaded yet (pgmux just started, or the database
// is new to it) waits for that first load, up to kFirstCatalogWait: classified without it, a call of a function
// that changes the session from inside would not be seen (transaction pooling would hand the server on with that
// change; with the split, later reads would go to a standby without it). Session pooling of one backend routes
// nothing by the catalog.
bool ClientConn::waits_for_first_catalog() {
  if (!catalog_.first_load_pending()) return false;
  if (!transaction_pooling() && !statements_may_move()) return false;
  set_state(ClientState::CatalogWait);
  return true;
}

void ClientConn::on_catalog_wait_over(bool loaded) {
  if (state_ != ClientState::CatalogWait) return;
  if (!loaded && catalog_.give_up_first_load()) {
    LOG_WARN("%s: the function catalog of database %s is not loaded after %s (no primary yet, or a slow load): its "
             "statements are judged without it until it loads",
             log_prefix().c_str(), escape_for_log(catalog_.slot()->database, 64).c_str(),
             format_seconds(kFirstCatalogWait).c_str());
  }
  resume_requests();
  pump();
}

}  // namespace pgmux::proxy
