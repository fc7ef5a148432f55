#include "proxy/control/probe_connection.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace pgmux::proxy {

// pg_current_wal_lsn() raises an error during recovery, hence the CASE. Timeline: on a primary, the timeline
// WAL is being written on, from the current WAL file name (right after a promotion; pg_control_checkpoint()
// keeps the old timeline until the first checkpoint on the new one). On a standby, the timeline it is
// receiving (pg_stat_wal_receiver.received_tli, visible to superusers and pg_read_all_stats), else its last
// restartpoint's. All of these work on PostgreSQL 15 for any user.
const char* const kProbeQuery =
    "SELECT pg_is_in_recovery(),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END,"
    " pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp()),"
    " CASE WHEN pg_is_in_recovery()"
    "  THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),"
    "                (SELECT timeline_id FROM pg_control_checkpoint()))"
    "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,"
    " (SELECT system_identifier FROM pg_control_system()),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END";

namespace {

// libpq messages end with a newline and may span lines; logs want one line.
std::string one_line(const char* text) {
  std::string out = text != nullptr ? text : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  for (size_t pos; (pos = out.find('\n')) != std::string::npos;) {
    size_t end = pos + 1;
    while (end < out.size() && (out[end] == '\t' || out[end] == ' ')) ++end;
    out.replace(pos, end - pos, "; ");
  }
  return out.empty() ? "unknown error" : out;
}

std::optional<uint64_t> lsn_or_zero(const char* text) {
  if (text == nullptr) return 0;
  return routing::parse_lsn(text);
}

bool parse_uint(const char* text, uint64_t& out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  if (*text == '-') {
    // system_identifier is an unsigned 64-bit value shown as bigint: it may print negative.
    const long long v = std::strtoll(text, &end, 10);
    out = static_cast<uint64_t>(v);
  } else {
    out = std::strtoull(text, &end, 10);
  }
  return errno == 0 && end != nullptr && *end == '\0';
}

bool is_numeric_host(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

double monotonic_seconds() { return static_cast<double>(uv_hrtime()) / 1e9; }

bool parse_probe_row(const char* const values[kProbeColumns], routing::ProbeResult& out) {
  if (values[0] == nullptr) return false;
  const std::string in_recovery = values[0];
  if (in_recovery != "t" && in_recovery != "f") return false;
  out.in_recovery = in_recovery == "t";
  const auto current = lsn_or_zero(values[1]);
  const auto receive = lsn_or_zero(values[2]);
  const auto replay = lsn_or_zero(values[3]);
  if (!current || !receive || !replay) return false;
  out.current_lsn = *current;
  out.receive_lsn = *receive;
  out.replay_lsn = *replay;
  out.replay_age_seconds.reset();
  if (values[4] != nullptr) {
    char* end = nullptr;
    const double age = std::strtod(values[4], &end);
    if (end == values[4] || *end != '\0' || !std::isfinite(age)) return false;
    out.replay_age_seconds = std::max(0.0, age);  // clocks of primary and standby may differ a little
  }
  uint64_t timeline = 0;
  if (values[5] != nullptr && (!parse_uint(values[5], timeline) || timeline > UINT32_MAX)) return false;
  out.timeline = static_cast<uint32_t>(timeline);
  uint64_t sysid = 0;
  if (values[6] != nullptr && !parse_uint(values[6], sysid)) return false;
  out.system_identifier = sysid;
  const auto insert = lsn_or_zero(values[7]);
  if (!insert) return false;
  out.insert_lsn = *insert;
  return true;
}

struct ProbeConnection::Resolve {
  uv_getaddrinfo_t req;
  ProbeConnection* owner;
};

ProbeConnection::ProbeConnection(uv_loop_t* loop, ProbeTarget target)
    : loop_(loop), target_(std::move(target)), deadline_(make_uv_handle<uv_timer_t>(this)) {
  deadline_->init(loop_);
}

ProbeConnection::~ProbeConnection() { close_connection(); }

bool ProbeConnection::start(double timeout_seconds, Done done) {
  if (busy()) return false;
  done_ = std::move(done);
  timeout_ = timeout_seconds;
  result_ = routing::ProbeResult{};
  result_.sent_at = monotonic_seconds();  // the LSN is read after this, even when a connect comes first
  have_row_ = false;
  error_.clear();
  uv_timer_start(deadline_->get(), on_deadline, static_cast<uint64_t>(std::ceil(timeout_seconds * 1000)), 0);
  if (conn_ != nullptr && state_ == State::Ready && PQstatus(conn_) == CONNECTION_OK) {
    reused_ = true;
    send_query();
  } else {
    close_connection();
    begin_connect();
  }
  return true;
}

void ProbeConnection::begin_connect() {
  const std::string& host = target_.host;
  if (host.empty() || host[0] == '/' || is_numeric_host(host)) {
    connect_to(is_numeric_host(host) ? host : "");
    return;
  }
  // libpq would resolve the name inside PQconnectStart, blocking the control loop; resolve it here instead.
  state_ = State::Resolving;
  resolve_ = new Resolve{};
  resolve_->owner = this;
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = uv_getaddrinfo(loop_, &resolve_->req, on_resolved, host.c_str(), nullptr, &hints);
  if (rc < 0) {
    delete resolve_;
    resolve_ = nullptr;
    fail("cannot resolve " + host + ": " + uv_strerror(rc));
  }
}

void ProbeConnection::on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  auto* resolve = reinterpret_cast<Resolve*>(req);
  ProbeConnection* self = resolve->owner;
  std::string address;
  if (status == 0 && res != nullptr) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* addr = res->ai_family == AF_INET6
                           ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr)
                           : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr);
    if (inet_ntop(res->ai_family, addr, buf, sizeof buf) != nullptr) address = buf;
  }
  uv_freeaddrinfo(res);
  delete resolve;
  if (self == nullptr) return;  // the probe was abandoned meanwhile
  self->resolve_ = nullptr;
  if (address.empty()) {
    self->fail("cannot resolve " + self->target_.host + ": " + (status < 0 ? uv_strerror(status) : "no address"));
    return;
  }
  self->connect_to(address);
}

void ProbeConnection::connect_to(const std::string& hostaddr) {
  const std::string port = std::to_string(target_.port);
  const std::string timeout = std::to_string(std::max(2, static_cast<int>(std::ceil(timeout_))));
  std::vector<const char*> keys;
  std::vector<const char*> values;
  // Pointers only: every value outlives PQconnectStartParams (members, locals or literals).
  auto add = [&](const char* key, const char* value) {
    keys.push_back(key);
    values.push_back(value);
  };
  if (!target_.host.empty()) add("host", target_.host.c_str());
  if (!hostaddr.empty()) add("hostaddr", hostaddr.c_str());
  add("port", port.c_str());
  add("user", target_.user.c_str());
  if (!target_.password.empty()) add("password", target_.password.c_str());
  add("dbname", target_.database.c_str());
  add("connect_timeout", timeout.c_str());  // ignored by PQconnectPoll; our deadline timer enforces it
  add("application_name", "pgmux-prober");
  add("gssencmode", "disable");  // GSSAPI negotiation may block on Kerberos lookups
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
  if (conn_ == nullptr) {
    fail("out of memory");
    return;
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    fail(one_line(PQerrorMessage(conn_)));
    return;
  }
  state_ = State::Connecting;
  watch(UV_WRITABLE);  // libpq: act as if PQconnectPoll had returned PGRES_POLLING_WRITING
}

void ProbeConnection::continue_connect() {
  switch (PQconnectPoll(conn_)) {
    case PGRES_POLLING_FAILED:
      fail(one_line(PQerrorMessage(conn_)));
      return;
    case PGRES_POLLING_READING:
      watch(UV_READABLE);
      return;
    case PGRES_POLLING_WRITING:
      watch(UV_WRITABLE);
      return;
    case PGRES_POLLING_OK:
      if (PQsetnonblocking(conn_, 1) != 0) {
        fail(one_line(PQerrorMessage(conn_)));
        return;
      }
      send_query();
      return;
    default:
      watch(UV_READABLE | UV_WRITABLE);
      return;
  }
}

void ProbeConnection::send_query() {
  state_ = State::Sending;
  if (PQsendQuery(conn_, kProbeQuery) == 0) {
    fail(one_line(PQerrorMessage(conn_)));
    return;
  }
  flush();
}

void ProbeConnection::flush() {
  const int rc = PQflush(conn_);
  if (rc < 0) {
    fail(one_line(PQerrorMessage(conn_)));
  } else if (rc == 1) {
    watch(UV_READABLE | UV_WRITABLE);  // libpq: on readable, consume input, then flush again
  } else {
    state_ = State::Waiting;
    watch(UV_READABLE);
  }
}

void ProbeConnection::read_results() {
  if (PQconsumeInput(conn_) == 0) {
    fail(one_line(PQerrorMessage(conn_)));
    return;
  }
  while (PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      if (have_row_ && error_.empty()) {
        succeed();
      } else {
        fail(error_.empty() ? "probe returned no row" : error_);
      }
      return;
    }
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == kProbeColumns) {
      const char* values[kProbeColumns];
      for (int c = 0; c < kProbeColumns; ++c) values[c] = PQgetisnull(res, 0, c) ? nullptr : PQgetvalue(res, 0, c);
      if (parse_probe_row(values, result_)) {
        have_row_ = true;
      } else if (error_.empty()) {
        error_ = "unexpected probe answer";
      }
    } else if (error_.empty()) {
      const char* message = PQresultErrorMessage(res);
      error_ = message != nullptr && *message != '\0'
                   ? one_line(message)
                   : std::string("unexpected probe result ") + PQresStatus(PQresultStatus(res));
    }
    PQclear(res);
  }
}

bool ProbeConnection::watch(int events) {
  const int fd = PQsocket(conn_);
  if (fd < 0) {
    fail("connection has no socket");
    return false;
  }
  if (poll_ && poll_fd_ != fd) poll_.reset();  // libpq moved to another socket (next address, SSL retry)
  if (!poll_) {
    poll_ = make_uv_handle<uv_poll_t>(this);
    const int rc = poll_->init(loop_, fd);
    if (rc < 0) {
      poll_.reset();
      fail(std::string("cannot watch the socket: ") + uv_strerror(rc));
      return false;
    }
    poll_fd_ = fd;
  } else {
    uv_poll_stop(poll_->get());  // re-register: libpq may have reopened a socket under the same number
  }
  uv_poll_start(poll_->get(), events, on_poll);
  return true;
}

void ProbeConnection::stop_watching() {
  if (poll_) uv_poll_stop(poll_->get());
}

void ProbeConnection::close_connection() {
  if (resolve_ != nullptr) {
    resolve_->owner = nullptr;  // its callback frees it
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
    resolve_ = nullptr;
  }
  if (poll_) {
    poll_.reset();  // stops polling before libpq closes the socket
    poll_fd_ = -1;
  }
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  state_ = State::Idle;
}

void ProbeConnection::fail(std::string error) {
  if (reused_ && (state_ == State::Sending || state_ == State::Waiting)) {
    // The kept-open connection died while idle (server restart, pg_terminate_backend): that says nothing about
    // the server now, so try once more on a fresh connection within the same deadline.
    reused_ = false;
    close_connection();
    begin_connect();
    return;
  }
  reused_ = false;
  uv_timer_stop(deadline_->get());
  close_connection();  // the next probe reconnects
  const routing::ProbeResult result = result_;
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(false, result, error);  // last: may destroy this
}

void ProbeConnection::succeed() {
  reused_ = false;
  uv_timer_stop(deadline_->get());
  stop_watching();
  state_ = State::Ready;
  const routing::ProbeResult result = result_;
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(true, result, std::string());  // last: may destroy this
}

void ProbeConnection::on_poll(uv_poll_t* handle, int status, int events) {
  auto* self = UvPoll<ProbeConnection>::owner_of(handle);
  if (self == nullptr) return;
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF (e.g. a refused connect); libpq reads the real error from the socket.
    events = UV_READABLE | UV_WRITABLE;
  }
  switch (self->state_) {
    case State::Connecting:
      self->continue_connect();
      break;
    case State::Sending:
      if ((events & UV_READABLE) != 0 && PQconsumeInput(self->conn_) == 0) {
        self->fail(one_line(PQerrorMessage(self->conn_)));
        return;
      }
      self->flush();
      break;
    case State::Waiting:
      self->read_results();
      break;
    default:
      self->stop_watching();
      break;
  }
}

void ProbeConnection::on_deadline(uv_timer_t* timer) {
  auto* self = UvTimer<ProbeConnection>::owner_of(timer);
  if (self == nullptr) return;
  self->reused_ = false;  // no second chance past the deadline
  char text[64];
  std::snprintf(text, sizeof text, "no answer within %.1f s", self->timeout_);
  self->fail(text);
}

}  // namespace pgmux::proxy
