#include "tests/integration/request_sizes_support.hpp"

#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/integration/routing/routing_support.hpp"
#include "tests/integration/txpool/txpool_support.hpp"

namespace pgmux::test::sizes {

using nlohmann::json;
using routing::now_seconds;

namespace {

int ms(double seconds) { return std::max(0, static_cast<int>(seconds * 1000)); }

json target_config(int listen, const Mode& mode, int pool_size) {
  json config = mode.split ? routing::routing_config(listen, cluster_ports()) : default_config(listen);
  if (!mode.split) config["routing"] = {{"read_write_split", false}};
  for (json& user : config["users"]) {
    if (user["name"] == "app") user["auth_method"] = "trust";
  }
  config["users"].push_back({{"name", "admin"}, {"password", "admin"}});
  config["admin_users"] = json::array({"admin"});
  for (json& db : config["databases"]) {
    if (db["name"] != "app") continue;
    db["pool_mode"] = mode.pool_mode;
    db["pool_size"] = pool_size;
  }
  return config;
}

void put16(std::string& out, uint16_t v) {
  v = htons(v);
  out.append(reinterpret_cast<const char*>(&v), 2);
}
void put32(std::string& out, uint32_t v) {
  v = htonl(v);
  out.append(reinterpret_cast<const char*>(&v), 4);
}
uint32_t get32(const std::string& s, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, s.data() + at, 4);
  return ntohl(v);
}
std::string cstr(const std::string& s) { return s + std::string(1, '\0'); }

}  // namespace

// ---- the proxy under test ----

std::vector<Mode> modes(bool split) {
  if (direct_mode()) return {{"direct", false}};
  return {{"session", split}, {"transaction", split}};
}

Target::Target(const Mode& m, int pool_size)
    : mode(m), listen(pick_listen_port()), proxy(target_config(listen, m, pool_size).dump(2), listen) {
  txpool::wait_serving(app("warmup"));
}

std::string Target::app(const std::string& application_name) const {
  const std::string ci = proxy.app_conninfo();
  return application_name.empty() ? ci : ci + " application_name=" + application_name;
}

std::string Target::console() const { return proxy.conninfo("admin", "admin", "pgmux"); }

void Target::log_if(bool failed) {
  if (!failed || logged || !proxy.process()) return;
  logged = true;
  MESSAGE("pgmux log (" << mode.pool_mode << " mode):\n" << proxy.process()->log());
}

// ---- bounded libpq ----

Limits Limits::for_bytes(size_t bytes) {
  const double mib = static_cast<double>(bytes) / (1024.0 * 1024.0);
  // Generous per MiB: a 60 MiB statement prepared again on another server is parsed, planned and run before the
  // first reply byte, and a loaded 2-core CI machine took over 18 s for that (a real hang still fails, later).
  return Limits{3.0 + mib, 30.0 + 2.5 * mib};
}

PgConn connect_nonblocking(const std::string& conninfo) {
  PgConn conn = connect(conninfo);
  if (PQsetnonblocking(conn.get(), 1) != 0) throw std::runtime_error("PQsetnonblocking failed");
  return conn;
}

std::string flush(PGconn* conn, const Limits& limits, double started) {
  for (;;) {
    const int r = PQflush(conn);
    if (r == 0) return "";
    if (r < 0) return std::string("sending failed: ") + PQerrorMessage(conn);
    const double left = started + limits.total - now_seconds();
    if (left <= 0) return "request not sent within " + std::to_string(limits.total) + " s";
    pollfd p{PQsocket(conn), POLLOUT | POLLIN, 0};
    const int n = poll(&p, 1, ms(std::min(limits.stall, left)));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      return "hang: the peer took no bytes of the request for " + std::to_string(limits.stall) + " s";
    }
    // A reply (an error) may come before the request is all sent: read it so neither side waits on the other.
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && PQconsumeInput(conn) == 0) {
      return std::string("connection broken while sending: ") + PQerrorMessage(conn);
    }
  }
}

PgResult next_result(PGconn* conn, const Limits& limits, double started, std::string& error) {
  error.clear();
  while (PQisBusy(conn)) {
    const double left = started + limits.total - now_seconds();
    if (left <= 0) {
      error = "no complete reply within " + std::to_string(limits.total) + " s";
      return nullptr;
    }
    if (!wait_readable(conn, std::min(limits.stall, left))) {
      error = "hang: no reply for " + std::to_string(limits.stall) + " s";
      return nullptr;
    }
    if (PQconsumeInput(conn) == 0) {
      error = std::string("connection broken: ") + PQerrorMessage(conn);
      return nullptr;
    }
  }
  return PgResult(PQgetResult(conn));
}

std::vector<PgResult> finish(PGconn* conn, const Limits& limits, std::string& error) {
  const double started = now_seconds();
  std::vector<PgResult> results;
  error = flush(conn, limits, started);
  while (error.empty()) {
    PgResult res = next_result(conn, limits, started, error);
    if (!res) break;
    results.push_back(std::move(res));
  }
  return results;
}

PgResult exec_bounded(PGconn* conn, const std::string& sql, double seconds) {
  if (PQsendQuery(conn, sql.c_str()) != 1) {
    throw std::runtime_error("PQsendQuery(" + sql.substr(0, 80) + "): " + PQerrorMessage(conn));
  }
  std::string error;
  std::vector<PgResult> results = finish(conn, Limits{seconds, seconds}, error);
  if (!error.empty()) throw std::runtime_error(sql.substr(0, 80) + ": " + error);
  if (results.empty()) throw std::runtime_error(sql.substr(0, 80) + ": no result");
  const ExecStatusType st = PQresultStatus(results.back().get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    throw std::runtime_error(sql.substr(0, 80) + ": " + describe(conn, results.back().get()));
  }
  return std::move(results.back());
}

std::string describe(PGconn* conn, const PGresult* res) {
  if (!res) return std::string("no result: ") + PQerrorMessage(conn);
  const ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_FATAL_ERROR && st != PGRES_NONFATAL_ERROR) return PQresStatus(st);
  const std::string code = sqlstate(res);
  return (code.empty() ? "" : "[" + code + "] ") + PQresultErrorMessage(res);
}

// ---- payloads ----

std::string payload(size_t n, unsigned seed) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -";  // 64
  std::string out(n, ' ');
  uint32_t x = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = kAlphabet[x & 63];
  }
  return out;
}

std::string md5_hex(const std::string& data) {
  unsigned char raw[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), raw, &len, EVP_md5(), nullptr);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(digits[raw[i] >> 4]);
    out.push_back(digits[raw[i] & 15]);
  }
  return out;
}

namespace {
const char kLiteralHead[] = "SELECT length(t), md5(t) FROM (SELECT $$";
const char kLiteralTail[] = "$$::text AS t) s";
}  // namespace

std::string literal_query(const std::string& literal) { return kLiteralHead + literal + kLiteralTail; }
size_t literal_query_overhead() { return sizeof kLiteralHead - 1 + sizeof kLiteralTail - 1; }

std::string check_length_md5(PGconn* conn, const PGresult* res, const std::string& sent) {
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) return "expected a row, got " + describe(conn, res);
  if (PQntuples(res) != 1 || PQnfields(res) != 2) return "expected one row of 2 columns";
  const std::string length = PQgetvalue(res, 0, 0), md5 = PQgetvalue(res, 0, 1);
  if (length != std::to_string(sent.size())) return "length " + length + ", sent " + std::to_string(sent.size());
  if (md5 != md5_hex(sent)) return "md5 " + md5 + " differs from what was sent";
  return "";
}

// ---- raw frontend messages ----

std::string message(char tag, const std::string& body) {
  std::string out(1, tag);
  put32(out, static_cast<uint32_t>(body.size() + 4));
  return out + body;
}

std::string query_message(const std::string& sql) { return message('Q', cstr(sql)); }

std::string parse_message(const std::string& name, const std::string& sql) {
  std::string body = cstr(name) + cstr(sql);
  put16(body, 0);
  return message('P', body);
}

std::string bind_message(const std::string& statement, const std::vector<std::string>& text_params,
                         const std::string& portal) {
  std::string body = cstr(portal) + cstr(statement);
  put16(body, 0);  // all parameters text
  put16(body, static_cast<uint16_t>(text_params.size()));
  for (const std::string& p : text_params) {
    put32(body, static_cast<uint32_t>(p.size()));
    body += p;
  }
  put16(body, 0);  // all results text
  return message('B', body);
}

std::string describe_portal_message() { return message('D', "P" + cstr("")); }

std::string execute_message(const std::string& portal) {
  std::string body = cstr(portal);
  put32(body, 0);
  return message('E', body);
}

std::string sync_message() { return message('S', ""); }

// ---- raw session ----

std::map<char, std::string> error_fields(const std::string& body) {
  std::map<char, std::string> fields;
  size_t pos = 0;
  while (pos < body.size() && body[pos] != '\0') {
    const char code = body[pos++];
    const size_t end = body.find('\0', pos);
    if (end == std::string::npos) break;
    fields[code] = body.substr(pos, end - pos);
    pos = end + 1;
  }
  return fields;
}

std::vector<std::string> data_row(const std::string& body) {
  std::vector<std::string> columns;
  if (body.size() < 2) return columns;
  const int n = (static_cast<unsigned char>(body[0]) << 8) | static_cast<unsigned char>(body[1]);
  size_t pos = 2;
  for (int i = 0; i < n && pos + 4 <= body.size(); ++i) {
    const auto len = static_cast<int32_t>(get32(body, pos));
    pos += 4;
    if (len < 0) {
      columns.emplace_back("<null>");
      continue;
    }
    columns.push_back(body.substr(pos, static_cast<size_t>(len)));
    pos += static_cast<size_t>(len);
  }
  return columns;
}

RawSession::RawSession(const std::string& conninfo) : conn_(connect(conninfo)), fd_(PQsocket(conn_.get())) {}

bool RawSession::send(const std::string& bytes, double seconds, size_t chunk) {
  const double deadline = now_seconds() + seconds;
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + off, std::min(chunk, bytes.size() - off), MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    const double left = deadline - now_seconds();
    if (left <= 0) return false;
    pollfd p{fd_, POLLOUT, 0};
    poll(&p, 1, ms(left));  // libpq's socket is non-blocking
  }
  return true;
}

RawSession::Read RawSession::read(BackendMessage& out, double deadline) {
  for (;;) {
    if (in_.size() >= 5) {
      const uint32_t len = get32(in_, 1);
      if (len < 4) return Read::Closed;  // not a backend message: treat as a broken stream
      if (in_.size() >= 1 + static_cast<size_t>(len)) {
        out.tag = in_[0];
        out.body = in_.substr(5, len - 4);
        in_.erase(0, 1 + static_cast<size_t>(len));
        return Read::Message;
      }
    }
    const double left = deadline - now_seconds();
    if (left <= 0) return Read::Timeout;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, ms(left)) == 0) return Read::Timeout;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0) return Read::Closed;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return Read::Closed;  // a reset after the peer closed
    }
    in_.append(buf, static_cast<size_t>(n));
  }
}

std::vector<BackendMessage> RawSession::read_until(char until, double deadline, Read& last) {
  std::vector<BackendMessage> messages;
  for (;;) {
    BackendMessage m;
    last = read(m, deadline);
    if (last != Read::Message) return messages;
    messages.push_back(std::move(m));
    if (messages.back().tag == until) return messages;
  }
}

void RawSession::abort() { ::shutdown(fd_, SHUT_RDWR); }

void RawSession::finish_sending() { ::shutdown(fd_, SHUT_WR); }

std::string tags(const std::vector<BackendMessage>& messages) {
  std::string out;
  for (const BackendMessage& m : messages) out.push_back(m.tag);
  return out;
}

}  // namespace pgmux::test::sizes
