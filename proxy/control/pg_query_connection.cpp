#include "proxy/control/pg_query_connection.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "proxy/net/log.hpp"

namespace pgmux::proxy {

namespace {

constexpr uint64_t kNameRefreshMs = 5000;

bool is_numeric_host(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

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

struct PgQueryConnection::Resolve {
  uv_getaddrinfo_t req;
  PgQueryConnection* owner;
};

PgQueryConnection::PgQueryConnection(uv_loop_t* loop, ProbeTarget target, const char* application_name)
    : loop_(loop),
      target_(std::move(target)),
      application_name_(application_name),
      deadline_(make_uv_handle<uv_timer_t>(this)) {
  deadline_->init(loop_);
}

PgQueryConnection::~PgQueryConnection() { close_connection(); }

bool PgQueryConnection::start(const char* sql, double timeout_seconds, OnResult on_result, Done done,
                              std::optional<std::string> param) {
  if (busy()) return false;
  sql_ = sql;
  param_ = std::move(param);
  on_result_ = std::move(on_result);
  done_ = std::move(done);
  timeout_ = timeout_seconds;
  error_.clear();
  uv_timer_start(deadline_->get(), on_deadline, static_cast<uint64_t>(std::ceil(timeout_seconds * 1000)), 0);
  // A name looked up again in the background (refresh_name) that now leads elsewhere: the connection is made
  // afresh to where it leads, unless the caller's session must last (stay_in_session).
  const bool follow_name = address_moved_ && retry_on_fresh_connection_;
  if (conn_ != nullptr && state_ == State::Ready && PQstatus(conn_) == CONNECTION_OK && !follow_name) {
    reused_ = true;
    refresh_name();
    send_query();
  } else {
    close_connection();
    begin_connect();
  }
  return true;
}

void PgQueryConnection::begin_connect() {
  const std::string& host = target_.host;
  if (host.empty() || host[0] == '/' || is_numeric_host(host)) {
    connect_to(is_numeric_host(host) ? host : "");
    return;
  }
  // libpq would resolve the name inside PQconnectStart, blocking the control loop; resolve it here instead.
  state_ = State::Resolving;
  const int rc = start_lookup(resolve_, on_resolved);
  if (rc < 0) fail("cannot resolve " + host + ": " + uv_strerror(rc));
}

// A lookup of target_.host in libuv's thread pool, owned through `slot` until `callback` runs; libuv's error (and
// an empty slot) when it cannot start.
int PgQueryConnection::start_lookup(Resolve*& slot, uv_getaddrinfo_cb callback) {
  slot = new Resolve{};
  slot->owner = this;
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = uv_getaddrinfo(loop_, &slot->req, callback, target_.host.c_str(), nullptr, &hints);
  if (rc < 0) {
    delete slot;
    slot = nullptr;
  }
  return rc;
}

namespace {
// Every address in a lookup's answer, as text, in its order.
std::vector<std::string> addresses_of(int status, const struct addrinfo* res) {
  std::vector<std::string> out;
  for (const struct addrinfo* a = status == 0 ? res : nullptr; a != nullptr; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* addr = a->ai_family == AF_INET6
                           ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr)
                           : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr);
    if (inet_ntop(a->ai_family, addr, buf, sizeof buf) != nullptr) out.emplace_back(buf);
  }
  return out;
}
}  // namespace

// A finished lookup: its addresses into *addresses, the request freed; its owner, or null if it let go of it.
PgQueryConnection* PgQueryConnection::finish_lookup(uv_getaddrinfo_t* req, int status, struct addrinfo* res,
                                                    std::vector<std::string>* addresses) {
  auto* lookup = reinterpret_cast<Resolve*>(req);
  PgQueryConnection* owner = lookup->owner;
  *addresses = addresses_of(status, res);
  uv_freeaddrinfo(res);
  delete lookup;
  return owner;
}

void PgQueryConnection::on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  std::vector<std::string> addresses;
  PgQueryConnection* self = finish_lookup(req, status, res, &addresses);
  if (self == nullptr) return;  // the probe was abandoned meanwhile
  self->resolve_ = nullptr;
  if (addresses.empty()) {
    self->fail("cannot resolve " + self->target_.host + ": " + (status < 0 ? uv_strerror(status) : "no address"));
    return;
  }
  self->looked_up_at_ms_ = uv_now(self->loop_);
  self->address_moved_ = false;
  self->connect_to(addresses.front());
}

// A connection to a host name looks the name up again, in the background, once the last lookup is kNameRefreshMs
// old, as a pooler's DNS TTL: a name a DNS-based failover repointed is followed. The connection in use goes on
// meanwhile; only an answer that no longer holds its address makes the next query connect afresh. A lookup that
// fails or hangs changes nothing (the backend is no less reachable for it).
void PgQueryConnection::refresh_name() {
  const std::string& host = target_.host;
  if (refresh_ != nullptr || address_moved_ || host.empty() || host[0] == '/' || is_numeric_host(host)) return;
  if (uv_now(loop_) - looked_up_at_ms_ < kNameRefreshMs) return;
  looked_up_at_ms_ = uv_now(loop_);
  start_lookup(refresh_, on_refreshed);  // one that cannot start is tried again kNameRefreshMs later
}

void PgQueryConnection::on_refreshed(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  std::vector<std::string> addresses;
  PgQueryConnection* self = finish_lookup(req, status, res, &addresses);
  if (self == nullptr) return;  // closed meanwhile
  self->refresh_ = nullptr;
  if (addresses.empty()) {
    LOG_WARN("%s: cannot look up %s again (%s); still using %s", self->application_name_, self->target_.host.c_str(),
             status < 0 ? uv_strerror(status) : "no address", self->hostaddr_.c_str());
    return;
  }
  // A name with several addresses (round-robin DNS) may list them in any order: only losing this one moves it.
  if (std::find(addresses.begin(), addresses.end(), self->hostaddr_) != addresses.end()) return;
  LOG_INFO("%s: %s now resolves to %s (was %s); connecting there", self->application_name_,
           self->target_.host.c_str(), addresses.front().c_str(), self->hostaddr_.c_str());
  self->address_moved_ = true;
}

void PgQueryConnection::connect_to(const std::string& hostaddr) {
  hostaddr_ = hostaddr;
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
  add("application_name", application_name_);
  add("gssencmode", "disable");  // GSSAPI negotiation may block on Kerberos lookups
  add("sslmode", target_.sslmode.c_str());
  if (!target_.sslrootcert.empty()) add("sslrootcert", target_.sslrootcert.c_str());
  if (!target_.sslcert.empty()) add("sslcert", target_.sslcert.c_str());
  if (!target_.sslkey.empty()) add("sslkey", target_.sslkey.c_str());
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

void PgQueryConnection::continue_connect() {
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

void PgQueryConnection::send_query() {
  state_ = State::Sending;
  // A parameter travels apart from the text (extended protocol): no quoting, whatever it holds.
  const char* value = param_ ? param_->c_str() : nullptr;
  const int sent = param_ ? PQsendQueryParams(conn_, sql_, 1, nullptr, &value, nullptr, nullptr, 0)
                          : PQsendQuery(conn_, sql_);
  if (sent == 0) {
    fail(one_line(PQerrorMessage(conn_)));
    return;
  }
  flush();
}

void PgQueryConnection::flush() {
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

void PgQueryConnection::read_results() {
  if (PQconsumeInput(conn_) == 0) {
    fail(one_line(PQerrorMessage(conn_)));
    return;
  }
  while (PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      if (error_.empty()) {
        succeed();
      } else {
        fail(error_);
      }
      return;
    }
    if (error_.empty()) {
      const ExecStatusType status = PQresultStatus(res);
      if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE || status == PGRES_NONFATAL_ERROR) {
        error_ = one_line(PQresultErrorMessage(res));
      } else {
        error_ = on_result_(res);
      }
    }
    PQclear(res);
  }
}

bool PgQueryConnection::watch(int events) {
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

void PgQueryConnection::stop_watching() {
  if (poll_) uv_poll_stop(poll_->get());
}

void PgQueryConnection::close_connection() {
  for (Resolve** lookup : {&resolve_, &refresh_}) {
    if (*lookup == nullptr) continue;
    (*lookup)->owner = nullptr;  // its callback frees it
    uv_cancel(reinterpret_cast<uv_req_t*>(&(*lookup)->req));
    *lookup = nullptr;
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

void PgQueryConnection::fail(std::string error) {
  if (reused_ && retry_on_fresh_connection_ && (state_ == State::Sending || state_ == State::Waiting)) {
    // The kept-open connection died while idle (server restart, pg_terminate_backend): that says nothing about
    // the server now, so try once more on a fresh connection within the same deadline.
    reused_ = false;
    error_.clear();
    close_connection();
    begin_connect();
    return;
  }
  reused_ = false;
  uv_timer_stop(deadline_->get());
  close_connection();  // the next query reconnects
  Done done = std::move(done_);
  done_ = nullptr;
  on_result_ = nullptr;
  if (done) done(false, error);  // last: may destroy this
}

void PgQueryConnection::succeed() {
  reused_ = false;
  uv_timer_stop(deadline_->get());
  stop_watching();
  state_ = State::Ready;
  Done done = std::move(done_);
  done_ = nullptr;
  on_result_ = nullptr;
  if (done) done(true, std::string());  // last: may destroy this
}

void PgQueryConnection::on_poll(uv_poll_t* handle, int status, int events) {
  auto* self = UvPoll<PgQueryConnection>::owner_of(handle);
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

void PgQueryConnection::on_deadline(uv_timer_t* timer) {
  auto* self = UvTimer<PgQueryConnection>::owner_of(timer);
  if (self == nullptr) return;
  self->reused_ = false;  // no second chance past the deadline
  char text[64];
  std::snprintf(text, sizeof text, "no answer within %.1f s", self->timeout_);
  self->fail(text);
}

bool start_for_value(PgQueryConnection& connection, const char* sql, double timeout_seconds, ValueDone done,
                     std::optional<std::string> param) {
  auto value = std::make_shared<std::string>();
  return connection.start(
      sql, timeout_seconds,
      [value](const PGresult* result) {
        if (value->empty() && PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0 &&
            PQnfields(result) > 0) {
          *value = PQgetvalue(result, 0, 0);
        }
        return std::string();
      },
      [value, done = std::move(done)](bool ok, const std::string& error) { done(ok, *value, error); },
      std::move(param));
}

}  // namespace pgmux::proxy
