#include "proxy/control/http_client.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <strings.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>

namespace pgmux::proxy {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds left before `deadline` (0 when past it).
int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits for `events` on fd; false (with *error) on timeout or a poll failure.
bool wait_for(int fd, short events, Clock::time_point deadline, double timeout, std::string* error) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, ms_left(deadline));
    if (rc > 0) return true;
    if (rc == 0) {
      char text[64];
      std::snprintf(text, sizeof text, "timed out after %.1f s", timeout);
      *error = text;
      return false;
    }
    if (errno != EINTR) {
      *error = std::string("poll: ") + std::strerror(errno);
      return false;
    }
  }
}

int connect_to(const HttpRequestSpec& spec, Clock::time_point deadline, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(spec.url.host.c_str(), std::to_string(spec.url.port).c_str(), &hints, &found);
  if (rc != 0) {
    *error = "cannot resolve " + spec.url.host + ": " + gai_strerror(rc);
    return -1;
  }
  int connected = -1;
  for (addrinfo* a = found; a != nullptr && connected < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      *error = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    int status = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    if (status == EINPROGRESS) {
      status = ETIMEDOUT;
      if (wait_for(fd, POLLOUT, deadline, spec.timeout, error)) {
        socklen_t len = sizeof status;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &status, &len) != 0) status = errno;
      }
    }
    if (status == 0) {
      connected = fd;
    } else {
      if (status != ETIMEDOUT || error->empty()) *error = std::strerror(status);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  return connected;
}

std::string request_text(const HttpRequestSpec& spec) {
  const bool v6 = spec.url.host.find(':') != std::string::npos;  // an IPv6 literal goes in brackets
  std::string text = spec.method + " " + spec.path + " HTTP/1.1\r\nHost: " + (v6 ? "[" : "") + spec.url.host +
                     (v6 ? "]:" : ":") + std::to_string(spec.url.port) +
                     "\r\nConnection: close\r\nAccept: application/json\r\n";
  if (!spec.basic_auth.empty()) {
    std::string encoded(4 * ((spec.basic_auth.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                  reinterpret_cast<const unsigned char*>(spec.basic_auth.data()),
                                  static_cast<int>(spec.basic_auth.size()));
    encoded.resize(static_cast<size_t>(n));
    text += "Authorization: Basic " + encoded + "\r\n";
  }
  if (!spec.body.empty() || spec.method != "GET") {
    text += "Content-Type: application/json\r\nContent-Length: " + std::to_string(spec.body.size()) + "\r\n";
  }
  text += "\r\n";
  text += spec.body;
  return text;
}

bool send_all(int fd, std::string_view data, Clock::time_point deadline, double timeout, std::string* error) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(fd, POLLOUT, deadline, timeout, error)) return false;
    } else {
      *error = std::string("send: ") + std::strerror(errno);
      return false;
    }
  }
  return true;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// The response head: status and Content-Length (nullopt: read to the close). False when malformed.
struct Head {
  int status = 0;
  size_t header_size = 0;
  std::optional<size_t> content_length;
  bool chunked = false;
};

bool parse_head(std::string_view text, size_t header_end, Head* head) {
  const size_t line_end = text.find("\r\n");
  const std::string_view status_line = text.substr(0, line_end);
  if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12 || status_line[8] != ' ') return false;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9') return false;
    status = status * 10 + (status_line[i] - '0');
  }
  head->status = status;
  head->header_size = header_end + 4;
  size_t at = line_end + 2;
  while (at < header_end) {
    const size_t end = text.find("\r\n", at);
    const std::string_view line = text.substr(at, end - at);
    at = end + 2;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (equals_ignoring_case(name, "content-length")) {
      size_t length = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return false;
        length = length * 10 + static_cast<size_t>(c - '0');
      }
      head->content_length = length;
    } else if (equals_ignoring_case(name, "transfer-encoding") && value.find("chunked") != std::string_view::npos) {
      head->chunked = true;
    }
  }
  return true;
}

// Reads the response into *result; false with result->error on failure.
bool read_response(int fd, const HttpRequestSpec& spec, Clock::time_point deadline, HttpResult* result) {
  std::string data;
  Head head;
  bool have_head = false;
  char buffer[16384];
  for (;;) {
    if (!have_head) {
      const size_t end = data.find("\r\n\r\n");
      if (end != std::string::npos) {
        have_head = true;
        if (!parse_head(data, end, &head)) {
          result->error = "malformed HTTP response head";
          return false;
        }
        if (head.chunked) {
          result->error = "chunked HTTP responses are not supported";
          return false;
        }
      } else if (data.size() > 65536) {
        result->error = "HTTP response head over 64 KiB";
        return false;
      }
    }
    if (have_head && head.content_length && data.size() >= head.header_size + *head.content_length) break;
    if (have_head && data.size() > head.header_size + spec.max_body) {
      result->error = "HTTP response body over " + std::to_string(spec.max_body) + " bytes";
      return false;
    }
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      data.append(buffer, static_cast<size_t>(n));
    } else if (n == 0) {
      if (!have_head || head.content_length) {
        result->error = "connection closed before the response was complete";
        return false;
      }
      break;
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!wait_for(fd, POLLIN, deadline, spec.timeout, &result->error)) return false;
    } else {
      result->error = std::string("recv: ") + std::strerror(errno);
      return false;
    }
  }
  result->status = head.status;
  result->body = data.substr(head.header_size, head.content_length.value_or(std::string::npos));
  result->ok = true;
  return true;
}

}  // namespace

HttpResult http_exchange(const HttpRequestSpec& spec) {
  HttpResult result;
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(spec.timeout * 1000));
  const int raw = connect_to(spec, deadline, &result.error);
  if (raw < 0) return result;
  Fd fd(raw);
  result.error.clear();
  if (!send_all(fd.get(), request_text(spec), deadline, spec.timeout, &result.error)) return result;
  read_response(fd.get(), spec, deadline, &result);
  return result;
}

struct HttpCall::Job {
  uv_work_t work{};
  HttpRequestSpec spec;
  HttpResult result;
  Done done;
  bool canceled = false;              // loop thread only
  std::shared_ptr<Job> keep_alive;    // until the after-work callback
};

std::shared_ptr<HttpCall> HttpCall::start(uv_loop_t* loop, HttpRequestSpec spec, Done done) {
  auto job = std::make_shared<Job>();
  job->spec = std::move(spec);
  job->done = std::move(done);
  job->work.data = job.get();
  const int rc = uv_queue_work(
      loop, &job->work, [](uv_work_t* w) { auto* j = static_cast<Job*>(w->data); j->result = http_exchange(j->spec); },
      [](uv_work_t* w, int status) {
        auto* j = static_cast<Job*>(w->data);
        std::shared_ptr<Job> self = std::move(j->keep_alive);
        if (j->canceled || !j->done) return;
        if (status != 0) {
          j->result = HttpResult{};
          j->result.error = uv_strerror(status);
        }
        Done done = std::move(j->done);
        done(std::move(j->result));
      });
  if (rc == 0) {
    job->keep_alive = job;
  } else {
    HttpResult failed;
    failed.error = std::string("cannot queue the request: ") + uv_strerror(rc);
    job->done(std::move(failed));  // synchronously: the caller's callback must tolerate it
    job->done = nullptr;
  }
  return std::shared_ptr<HttpCall>(new HttpCall(std::move(job)));
}

void HttpCall::cancel() {
  if (job_) {
    job_->canceled = true;
    job_->done = nullptr;
  }
}

HttpCall::~HttpCall() { cancel(); }

}  // namespace pgmux::proxy
