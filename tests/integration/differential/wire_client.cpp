#include "tests/integration/differential/wire_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "protocol/auth_md5.hpp"
#include "protocol/auth_scram.hpp"
#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/startup.hpp"

namespace pgmux::difftest {

namespace {

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace

WireClient::~WireClient() { close(); }

void WireClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  in_.clear();
}

bool WireClient::connect(const std::string& host, int port, std::chrono::milliseconds timeout) {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    error_ = "bad IPv4 address " + host;
    return false;
  }
  // Non-blocking connect so the timeout holds; the socket goes back to blocking mode afterwards and every
  // later read is guarded by poll().
  int flags = ::fcntl(fd_, F_GETFL, 0);
  ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno != EINPROGRESS) {
    error_ = "connect " + host + ":" + std::to_string(port) + ": " + std::strerror(errno);
    return false;
  }
  if (rc != 0) {
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      error_ = "connect " + host + ":" + std::to_string(port) + ": timed out";
      return false;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      error_ = "connect " + host + ":" + std::to_string(port) + ": " + std::strerror(err);
      return false;
    }
  }
  ::fcntl(fd_, F_SETFL, flags);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}

bool WireClient::send(const ByteVector& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = std::string("send: ") + std::strerror(errno);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

bool WireClient::fill(Clock::time_point deadline, ReadStatus& status) {
  pollfd p{fd_, POLLIN, 0};
  int rc = ::poll(&p, 1, remaining_ms(deadline));
  if (rc == 0) {
    status = ReadStatus::Timeout;
    return false;
  }
  if (rc < 0) {
    if (errno == EINTR) return true;
    error_ = std::string("poll: ") + std::strerror(errno);
    status = ReadStatus::Error;
    return false;
  }
  std::byte buf[16384];
  ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
  if (n == 0) {
    status = ReadStatus::Closed;
    return false;
  }
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return true;
    // A reset after the peer closed counts as closed: the server may RST once it has exited.
    status = errno == ECONNRESET ? ReadStatus::Closed : ReadStatus::Error;
    error_ = std::string("recv: ") + std::strerror(errno);
    return false;
  }
  in_.insert(in_.end(), buf, buf + n);
  return true;
}

ReadStatus WireClient::read_message(BackendMessage& out, Clock::time_point deadline) {
  if (fd_ < 0) {
    error_ = "not connected";
    return ReadStatus::Error;
  }
  for (;;) {
    protocol::Frame f = protocol::next_frame(in_);
    if (f.status == protocol::FrameStatus::Error) {
      error_ = std::string("bad backend frame: ") + protocol::to_string(f.error);
      return ReadStatus::Error;
    }
    if (f.status == protocol::FrameStatus::Frame && in_.size() >= f.total()) {
      out.tag = f.tag;
      out.body.assign(in_.begin() + static_cast<std::ptrdiff_t>(f.header_size()),
                      in_.begin() + static_cast<std::ptrdiff_t>(f.total()));
      in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(f.total()));
      return ReadStatus::Message;
    }
    ReadStatus status = ReadStatus::Message;
    if (!fill(deadline, status)) {
      if (status == ReadStatus::Closed && !in_.empty()) error_ = "connection closed inside a message";
      return status;
    }
  }
}

bool WireClient::authenticate(const LoginParams& params, Clock::time_point deadline) {
  std::optional<protocol::ScramClient> scram;
  for (;;) {
    BackendMessage m;
    ReadStatus st = read_message(m, deadline);
    if (st != ReadStatus::Message) {
      if (error_.empty()) error_ = st == ReadStatus::Timeout ? "login timed out" : "connection closed in login";
      return false;
    }
    if (m.tag == protocol::backend::kErrorResponse) {
      error_ = "login failed: " + std::string(protocol::as_chars(m.body));
      return false;
    }
    if (m.tag != protocol::backend::kAuthentication) {
      error_ = std::string("unexpected message in auth: ") + m.tag;
      return false;
    }
    auto auth = protocol::parse_authentication(m.body);
    if (!auth) {
      error_ = "malformed Authentication message";
      return false;
    }
    ByteVector reply;
    switch (auth->code) {
      case protocol::AuthCode::Ok:
        return true;
      case protocol::AuthCode::CleartextPassword:
        protocol::build_password_message(reply, params.password);
        break;
      case protocol::AuthCode::Md5Password: {
        if (auth->payload.size() != 4) {
          error_ = "bad MD5 salt";
          return false;
        }
        std::array<std::byte, 4> salt{};
        std::copy(auth->payload.begin(), auth->payload.end(), salt.begin());
        protocol::build_password_message(reply,
                                         protocol::md5_client_response(params.password, params.user, salt));
        break;
      }
      case protocol::AuthCode::Sasl:
        scram.emplace(params.password);
        protocol::build_sasl_initial_response(reply, "SCRAM-SHA-256", scram->client_first());
        break;
      case protocol::AuthCode::SaslContinue: {
        if (!scram) {
          error_ = "SASLContinue before SASL";
          return false;
        }
        auto final_msg = scram->client_final(protocol::as_chars(auth->payload));
        if (!final_msg) {
          error_ = "SCRAM: " + scram->error();
          return false;
        }
        protocol::build_sasl_response(reply, *final_msg);
        break;
      }
      case protocol::AuthCode::SaslFinal:
        if (!scram || !scram->verify_server_final(protocol::as_chars(auth->payload))) {
          error_ = "SCRAM server signature did not verify";
          return false;
        }
        continue;  // AuthenticationOk follows
      default:
        error_ = "unsupported authentication code " + std::to_string(static_cast<int32_t>(auth->code));
        return false;
    }
    if (!send(reply)) return false;
  }
}

bool WireClient::login(const LoginParams& params, std::vector<BackendMessage>& captured,
                       std::chrono::milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  std::vector<std::pair<std::string, std::string>> startup{{"user", params.user},
                                                           {"database", params.database}};
  startup.insert(startup.end(), params.extra.begin(), params.extra.end());
  ByteVector out;
  protocol::build_startup_message(out, startup);
  if (!send(out) || !authenticate(params, deadline)) return false;
  for (;;) {
    BackendMessage m;
    ReadStatus st = read_message(m, deadline);
    if (st != ReadStatus::Message) {
      if (error_.empty()) error_ = "no ReadyForQuery after AuthenticationOk";
      return false;
    }
    captured.push_back(m);
    if (m.tag == protocol::backend::kReadyForQuery) return true;
    if (m.tag == protocol::backend::kErrorResponse) {
      error_ = "error after AuthenticationOk: " + std::string(protocol::as_chars(m.body));
      return false;
    }
  }
}

}  // namespace pgmux::difftest
