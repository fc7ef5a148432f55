#include "tests/soak/soak_client.hpp"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tests/support/pgmux_process.hpp"

namespace pgmux::soak {
namespace {

// SQLSTATEs a client sees when a server is lost under it: PostgreSQL's FATAL for pg_terminate_backend (relayed in
// session mode, or a login refused by a dying server), pgmux's own "server connection lost" / "could not
// connect" (08006) and "lost while its COMMIT ran" (08007). These are the killed-backend fault, not pgmux failing.
bool server_lost_state(const std::string& sqlstate) {
  return sqlstate == "57P01" || sqlstate == "08006" || sqlstate == "08007";
}

int open_nonblocking_connect(int port, bool* in_progress) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr = test::loopback_address(port);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  *in_progress = rc != 0 && errno == EINPROGRESS;
  if (rc != 0 && !*in_progress) {
    close(fd);
    return -1;
  }
  return fd;
}

bool connect_finished_ok(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

}  // namespace

const char* scenario_name(Scenario s) {
  static const char* names[kScenarioCount] = {
      "queries",        "transaction",   "wrong_password",  "unknown_user",       "unknown_database",
      "close_startup",  "close_mid_auth", "half_query",     "close_after_query",  "reset_mid_query",
      "close_in_transaction", "cancel", "close_after_auth", "bogus_cancel", "extended_then_vanish"};
  return names[static_cast<int>(s)];
}

SoakClient::SoakClient(Scenario scenario, ClientTarget target, Clock::time_point deadline)
    : scenario_(scenario), target_(std::move(target)), deadline_(deadline), scram_(target_.password) {
  if (scenario_ == Scenario::WrongPassword) scram_ = CachedScram("not-" + target_.password);
  if (scenario_ == Scenario::UnknownUser) target_.user = "soak_nobody";
  if (scenario_ == Scenario::UnknownDatabase) target_.database = "soak_no_such_database";
}

SoakClient::~SoakClient() {
  if (fd_ >= 0) close(fd_);
  close_cancel();
}

bool SoakClient::start() {
  fd_ = open_nonblocking_connect(target_.port, &connecting_);
  if (fd_ < 0) {
    finish("connect_failed", std::strerror(errno));
    return false;
  }
  if (!connecting_) on_event(EPOLLOUT);
  return !done_;
}

void SoakClient::on_event(uint32_t events) {
  if (done_) return;
  if (connecting_ && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    connecting_ = false;
    if (!connect_finished_ok(fd_)) return finish("connect_failed", "SO_ERROR");
    if (scenario_ == Scenario::BogusCancel) {
      send(cancel_request(static_cast<int32_t>(Clock::now().time_since_epoch().count()), 12345));
      return;
    }
    send(startup_message(target_.user, target_.database));
    if (scenario_ == Scenario::CloseAfterStartup) return vanish(false);
  }
  if (done_) return;
  if (events & EPOLLOUT) flush();
  if (!done_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable();
}

void SoakClient::on_readable() {
  char buf[65536];
  bool eof = false;
  while (true) {
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    eof = true;  // EOF or a reset
    break;
  }
  bool broken = false;
  while (!done_) {
    auto msg = take_message(in_, &broken);
    if (!msg) break;
    handle(*msg);
  }
  if (done_) return;
  if (broken) return finish("unexpected", "impossible message length from pgmux");
  if (!eof) return;
  if (scenario_ == Scenario::BogusCancel && in_.empty()) return finish("closed");
  if (killed_ || server_lost_state(error_state_)) return finish("killed " + error_state_);
  finish("unexpected", "pgmux closed the connection (phase " + std::to_string(static_cast<int>(phase_)) +
                           ", last SQLSTATE '" + error_state_ + "')");
}

void SoakClient::handle(const BackendMessage& msg) {
  switch (msg.tag) {
    case 'R': return handle_auth(msg);
    case 'E': return handle_error(msg);
    case 'K':
      backend_pid_ = static_cast<int32_t>(read_u32(msg.body, 0));
      backend_key_ = static_cast<int32_t>(read_u32(msg.body, 4));
      return;
    case 'Z': return on_ready_for_query(msg.body.empty() ? '?' : msg.body[0]);
    default: return;  // ParameterStatus, RowDescription, DataRow, CommandComplete, NoticeResponse ...
  }
}

void SoakClient::handle_auth(const BackendMessage& msg) {
  const uint32_t code = read_u32(msg.body, 0);
  if (code == 0 || code == 12) return;  // AuthenticationOk, SASLFinal
  if (code == 10) return send(sasl_initial_response(scram_.client_first()));
  if (code == 11) {
    if (scenario_ == Scenario::CloseMidAuth) return vanish(false);
    auto answer = scram_.client_final(msg.body.substr(4));
    if (!answer) return finish("unexpected", "malformed SCRAM server-first");
    send(sasl_response(*answer));
    if (scenario_ == Scenario::CloseAfterAuth) vanish(false);
    return;
  }
  finish("unexpected", "authentication request " + std::to_string(code));
}

void SoakClient::handle_error(const BackendMessage& msg) {
  error_state_ = error_field(msg.body, 'C');
  if (phase_ == Phase::Login) {
    // A login that fails ends here; pgmux closes the connection after a FATAL.
    if (server_lost_state(error_state_)) return finish("killed " + error_state_);
    return finish(error_state_, error_field(msg.body, 'M'));
  }
  if (server_lost_state(error_state_)) {
    killed_ = true;
    return;
  }
  if (error_state_ == "57014") {
    // Outside the Cancel scenario: a cancel another client sent late, which reached the server after that
    // client's query had ended and the server had moved on to this client (transaction pooling). The protocol's
    // cancel has no query id, so neither PostgreSQL nor a pooler can tell; retrying cancels only after 1 s makes
    // it rare.
    late_cancel_ = scenario_ != Scenario::Cancel;
    return;
  }
  finish("unexpected", "SQLSTATE " + error_state_ + ": " + error_field(msg.body, 'M'));
}

void SoakClient::on_ready_for_query(char tx_status) {
  const Phase was = phase_;
  phase_ = Phase::Ready;
  if (was == Phase::Login) return after_login();
  if (scenario_ == Scenario::Cancel && error_state_ != "57014" && !killed_) {
    return finish("unexpected", "pg_sleep(30) was not cancelled");
  }
  if (killed_ || late_cancel_) {
    send(terminate_message());
    return finish(killed_ ? "killed " + error_state_ : "late cancel 57014");
  }
  if (tx_status == 'E') return finish("unexpected", "transaction failed");
  next_step();
}

void SoakClient::after_login() {
  switch (scenario_) {
    case Scenario::Queries: steps_ = {"SELECT 1", "SELECT 2"}; break;
    case Scenario::Transaction: steps_ = {"BEGIN", "SELECT count(*) FROM pg_class", "COMMIT"}; break;
    case Scenario::CloseInTransaction: steps_ = {"BEGIN", "SELECT 1"}; break;
    case Scenario::Cancel:
      // Cancelled within ms when all is well. 30 s, not 5: on a loaded machine the postmaster took more than 5 s
      // to fork for some cancel requests (pgmux logged their connections as not closed in time) while the soak's
      // churn ran, and the sleep ended before any of its five tries landed.
      steps_ = {"SELECT pg_sleep(30)"};
      next_cancel_ = Clock::now() + std::chrono::milliseconds(50);
      break;
    case Scenario::HalfQuery: {
      const std::string query = query_message("SELECT 'soak: half of this message never arrives'");
      send(query.substr(0, query.size() / 2));
      return vanish(false);
    }
    case Scenario::CloseAfterQuery:
      send(query_message("SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g"));
      return vanish(false);
    case Scenario::ExtendedThenVanish:
      phase_ = Phase::Busy;
      send(extended_query("soak_statement", "SELECT 1", true));
      return;
    case Scenario::ResetMidQuery:
      send(query_message("SELECT pg_sleep(0.05)"));
      return vanish(true);
    default: return finish("unexpected", "logged in although the scenario expects a refusal");
  }
  next_step();
}

void SoakClient::next_step() {
  if (step_ < steps_.size()) {
    error_state_.clear();
    phase_ = Phase::Busy;
    send(query_message(steps_[step_++]));
    return;
  }
  if (scenario_ == Scenario::CloseInTransaction) return vanish(false);
  if (scenario_ == Scenario::ExtendedThenVanish) {
    send(extended_query("soak_statement_2", "SELECT 2", false));  // no Sync: the request never completes
    return vanish(false);
  }
  send(terminate_message());
  // A cancel that needed a second request (the first came before the query ran, or was lost) shows apart.
  finish(scenario_ != Scenario::Cancel ? "ok" : cancels_sent_ > 1 ? "cancelled, retried" : "cancelled");
}

void SoakClient::send(const std::string& bytes) {
  out_ += bytes;
  flush();
}

void SoakClient::flush() {
  while (!out_.empty() && fd_ >= 0) {
    ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    out_.clear();  // the peer is gone; the read side reports how
    return;
  }
}

void SoakClient::on_tick(Clock::time_point now) {
  if (done_) return;
  if (now >= deadline_) {
    return finish("timeout", "no progress (phase " + std::to_string(static_cast<int>(phase_)) + ", step " +
                                 std::to_string(step_) + ")");
  }
  if (scenario_ == Scenario::Cancel && phase_ == Phase::Busy && now >= next_cancel_ && cancel_fd_ < 0) {
    open_cancel_connection();
    next_cancel_ = now + std::chrono::milliseconds(1000);  // pressed again if the query still runs
  }
}

void SoakClient::open_cancel_connection() {
  cancel_fd_ = open_nonblocking_connect(target_.port, &cancel_connecting_);
  if (cancel_fd_ < 0) return;
  ++cancels_sent_;
  cancel_out_ = cancel_request(backend_pid_, backend_key_);
  if (!cancel_connecting_) on_cancel_event(EPOLLOUT);
}

void SoakClient::on_cancel_event(uint32_t events) {
  if (cancel_fd_ < 0) return;
  if (cancel_connecting_) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    cancel_connecting_ = false;
    if (!connect_finished_ok(cancel_fd_)) return close_cancel();
  }
  if (!cancel_out_.empty()) {
    ssize_t n = ::send(cancel_fd_, cancel_out_.data(), cancel_out_.size(), MSG_NOSIGNAL);
    if (n > 0) cancel_out_.erase(0, static_cast<size_t>(n));
    if (n < 0 && errno != EAGAIN) return close_cancel();
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    char buf[64];
    ssize_t n = recv(cancel_fd_, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) close_cancel();  // pgmux closes once it handled the request
  }
}

void SoakClient::close_cancel() {
  if (cancel_fd_ >= 0) close(cancel_fd_);
  cancel_fd_ = -1;
  cancel_connecting_ = false;
  cancel_out_.clear();
}

void SoakClient::vanish(bool reset) {
  if (reset && fd_ >= 0) {
    linger hard{1, 0};  // close() sends RST instead of FIN
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  }
  finish("vanished");
}

void SoakClient::finish(const std::string& outcome, const std::string& detail) {
  if (done_) return;
  done_ = true;
  outcome_ = outcome;
  detail_ = detail;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  close_cancel();
}

bool SoakClient::expected_outcome() const {
  if (outcome_.rfind("killed ", 0) == 0 || outcome_ == "late cancel 57014") return true;
  switch (scenario_) {
    case Scenario::WrongPassword:
    case Scenario::UnknownUser: return outcome_ == "28P01";
    case Scenario::UnknownDatabase: return outcome_ == "3D000";
    case Scenario::BogusCancel: return outcome_ == "closed";
    case Scenario::Queries:
    case Scenario::Transaction: return outcome_ == "ok";
    case Scenario::Cancel: return outcome_ == "cancelled" || outcome_ == "cancelled, retried";
    default: return outcome_ == "vanished";
  }
}

}  // namespace pgmux::soak
