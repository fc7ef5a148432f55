#include "tests/support/raw_startup.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

namespace pgmux::test {
namespace {

using Clock = std::chrono::steady_clock;

// A blocking-with-deadline TCP connection that reads whole backend messages.
class Wire {
 public:
  Wire(int port, double timeout_s) : Wire(RawEndpoint{port, {}}, timeout_s) {}
  Wire(const RawEndpoint& to, double timeout_s)
      : deadline_(Clock::now() +
                  std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s))) {
    int rc = -1;
    if (to.unix_path.empty()) {
      fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(to.port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (fd_ >= 0) rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    } else {
      fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", to.unix_path.c_str());
      if (fd_ >= 0) rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    }
    if (fd_ >= 0 && rc != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Wire() {
    if (fd_ >= 0) close(fd_);
  }
  Wire(const Wire&) = delete;
  Wire& operator=(const Wire&) = delete;

  bool connected() const { return fd_ >= 0; }

  // Closes now; with reset, by a TCP reset (SO_LINGER 0) instead of FIN.
  void shut_write() {
    if (fd_ >= 0) shutdown(fd_, SHUT_WR);
  }
  void abandon(bool reset) {
    if (fd_ < 0) return;
    if (reset) {
      linger hard{1, 0};
      setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    }
    close(fd_);
    fd_ = -1;
  }

  bool send_all(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads exactly `size` bytes into out (appended); false on EOF, reset or timeout.
  bool read_bytes(std::string& out, size_t size) {
    const size_t at = out.size();
    out.resize(at + size);
    const bool ok = read_exact(out.data() + at, size);
    if (!ok) out.resize(at);
    return ok;
  }

  // Reads until the peer closes (true) or the deadline passes (false); whatever arrived is appended to out.
  bool read_to_end(std::string& out) {
    char buf[4096];
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      if (left <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(left)) <= 0) return false;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;  // EOF, or a reset (the server closed with our bytes unread)
      out.append(buf, static_cast<size_t>(n));
    }
  }

  // Reads one message: tag and body (without the length). False on EOF, timeout or a bad length.
  bool read_message(char& tag, std::string& body) {
    char header[5];
    if (!read_exact(header, 5)) return false;
    tag = header[0];
    uint32_t len = 0;
    std::memcpy(&len, header + 1, 4);
    len = ntohl(len);
    if (len < 4 || len > (1u << 24)) return false;
    body.resize(len - 4);
    return read_exact(body.data(), body.size());
  }

 private:
  bool read_exact(char* out, size_t size) {
    size_t got = 0;
    while (got < size) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      if (left <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(left)) <= 0) return false;
      ssize_t n = ::recv(fd_, out + got, size - got, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  }

  int fd_ = -1;
  Clock::time_point deadline_;
};

void put_i32(std::string& out, uint32_t v) {
  v = htonl(v);
  out.append(reinterpret_cast<const char*>(&v), 4);
}

uint32_t get_i32(const std::string& s, size_t at) {
  uint32_t v = 0;
  if (at + 4 <= s.size()) std::memcpy(&v, s.data() + at, 4);
  return ntohl(v);
}

std::string message(char tag, const std::string& body) {
  std::string out(1, tag);
  put_i32(out, static_cast<uint32_t>(body.size() + 4));
  return out + body;
}

std::string startup_packet(const std::string& user, const std::string& database, const StartupExtras& extras) {
  std::vector<std::pair<std::string, std::string>> parameters{{"user", user}, {"database", database}};
  parameters.insert(parameters.end(), extras.parameters.begin(), extras.parameters.end());
  return raw_packet(extras.protocol_version, raw_parameters(parameters));
}

std::string digest(const EVP_MD* md, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string hmac256(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string hex(const std::string& raw) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string b64(const std::string& raw) {
  std::vector<unsigned char> out(4 * ((raw.size() + 2) / 3) + 1);
  int n = EVP_EncodeBlock(out.data(), reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  return std::string(reinterpret_cast<char*>(out.data()), static_cast<size_t>(n));
}

std::optional<std::string> unb64(const std::string& text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::vector<unsigned char> out(text.size() / 4 * 3 + 1);
  int n =
      EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  size_t len = static_cast<size_t>(n);
  if (!text.empty() && text.back() == '=') --len;  // EVP_DecodeBlock counts the padding
  if (text.size() > 1 && text[text.size() - 2] == '=') --len;
  return std::string(reinterpret_cast<char*>(out.data()), len);
}


void parse_error(const std::string& body, StartupOutcome& out) {
  size_t pos = 0;
  while (pos < body.size() && body[pos] != '\0') {
    char field = body[pos++];
    size_t end = body.find('\0', pos);
    if (end == std::string::npos) break;
    std::string value = body.substr(pos, end - pos);
    if (field == 'C') out.sqlstate = value;
    if (field == 'M') out.message = value;
    if (field == 'D') out.detail = value;
    pos = end + 1;
  }
}

// The SCRAM exchange state between messages.
struct Scram {
  std::string password;
  std::string client_first_bare;
  std::string server_signature;

  std::string first() {
    unsigned char raw[18];
    RAND_bytes(raw, sizeof raw);
    client_first_bare = "n=,r=" + b64(std::string(reinterpret_cast<char*>(raw), sizeof raw));
    return "n,," + client_first_bare;
  }

  std::optional<std::string> final_message(const std::string& server_first) {
    std::string nonce = scram_attribute(server_first, 'r');
    auto salt = unb64(scram_attribute(server_first, 's'));
    int iterations = std::atoi(scram_attribute(server_first, 'i').c_str());
    if (nonce.empty() || !salt || iterations <= 0) return std::nullopt;
    unsigned char salted[32];
    PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                      reinterpret_cast<const unsigned char*>(salt->data()), static_cast<int>(salt->size()), iterations,
                      EVP_sha256(), sizeof salted, salted);
    std::string salted_password(reinterpret_cast<char*>(salted), sizeof salted);
    std::string client_key = hmac256(salted_password, "Client Key");
    std::string stored_key = digest(EVP_sha256(), client_key);
    std::string without_proof = "c=biws,r=" + nonce;
    std::string auth_message = client_first_bare + "," + server_first + "," + without_proof;
    std::string signature = hmac256(stored_key, auth_message);
    std::string proof = client_key;
    for (size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<char>(proof[i] ^ signature[i]);
    server_signature = hmac256(hmac256(salted_password, "Server Key"), auth_message);
    return without_proof + ",p=" + b64(proof);
  }
};

}  // namespace

std::string scram_attribute(const std::string& msg, char key) {
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t end = msg.find(',', pos);
    if (end == std::string::npos) end = msg.size();
    if (end - pos >= 2 && msg[pos] == key && msg[pos + 1] == '=') return msg.substr(pos + 2, end - pos - 2);
    pos = end + 1;
  }
  return "";
}

std::string raw_packet(uint32_t code, const std::string& body) {
  std::string out;
  put_i32(out, static_cast<uint32_t>(body.size() + 8));
  put_i32(out, code);
  return out + body;
}

std::string raw_parameters(const std::vector<std::pair<std::string, std::string>>& parameters) {
  std::string body;
  for (const auto& [name, value] : parameters) {
    body += name;
    body.push_back('\0');
    body += value;
    body.push_back('\0');
  }
  body.push_back('\0');
  return body;
}

RawReply raw_exchange(const RawEndpoint& to, const std::vector<RawStep>& steps, double timeout_s) {
  RawReply reply;
  Wire wire(to, timeout_s);
  if (!wire.connected()) return reply;
  for (const RawStep& step : steps) {
    reply.step_replies.emplace_back();
    // A server that closed early makes a later step fail; what it sent is still read below.
    if (!wire.send_all(step.send)) break;
    if (step.read > 0 && !wire.read_bytes(reply.step_replies.back(), step.read)) break;
  }
  reply.closed = wire.read_to_end(reply.rest);
  return reply;
}

StartupOutcome raw_startup(int port, const std::string& user, const std::string& password,
                           const std::string& database, double timeout_s, const StartupExtras& extras) {
  StartupOutcome out;
  Wire wire(port, timeout_s);
  if (!wire.connected()) {
    out.message = "connect to port " + std::to_string(port) + " failed";
    return out;
  }
  if (!wire.send_all(startup_packet(user, database, extras) + extras.after_startup)) {
    out.message = "sending the startup packet failed";
    return out;
  }
  if (!extras.after_startup.empty()) wire.shut_write();
  Scram scram{password, "", ""};
  char tag = 0;
  std::string body;
  while (wire.read_message(tag, body)) {
    if (!out.trace.empty()) out.trace += ' ';
    out.trace += tag;
    if (tag == 'R') out.trace += std::to_string(get_i32(body, 0));
    const bool to_the_end = !extras.after_proof.empty() || !extras.after_startup.empty();
    if (tag == 'E') {
      parse_error(body, out);
      if (!to_the_end) return out;
    }
    if (tag == 'Z') {
      out.ok = true;
      if (to_the_end) continue;
      wire.send_all(message('X', ""));
      return out;
    }
    if (tag == 'v') out.negotiation = message(tag, body);
    if (tag == 'K') out.backend_pid = static_cast<int32_t>(get_i32(body, 0));
    if (tag == 'S') {
      const size_t name_end = body.find('\0');
      const size_t value_end = name_end == std::string::npos ? name_end : body.find('\0', name_end + 1);
      if (value_end != std::string::npos) {
        out.parameters.emplace_back(body.substr(0, name_end), body.substr(name_end + 1, value_end - name_end - 1));
      }
    }
    if (tag != 'R') continue;  // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion
    uint32_t code = get_i32(body, 0);
    bool sent = true;
    switch (code) {
      case 0:  // AuthenticationOk
        if (out.auth_method.empty()) out.auth_method = "ok";
        break;
      case 3:  // cleartext
        out.auth_method = "cleartext";
        sent = wire.send_all(message('p', password + std::string(1, '\0')));
        break;
      case 5: {  // md5 with a 4-byte salt
        out.auth_method = "md5";
        std::string inner = hex(digest(EVP_md5(), password + user));
        std::string outer = "md5" + hex(digest(EVP_md5(), inner + body.substr(4, 4)));
        sent = wire.send_all(message('p', outer + std::string(1, '\0')));
        break;
      }
      case 10: {  // SASL: list of mechanisms
        out.auth_method = "scram-sha-256";
        if (body.find("SCRAM-SHA-256") == std::string::npos) {
          out.message = "server offers no SCRAM-SHA-256";
          return out;
        }
        std::string first = scram.first();
        if (!extras.scram_client_first.empty()) first = extras.scram_client_first;
        std::string payload = "SCRAM-SHA-256" + std::string(1, '\0');
        if (extras.scram_no_initial_response) {
          put_i32(payload, 0xffffffffu);  // -1
          sent = wire.send_all(message('p', payload));
        } else {
          put_i32(payload, static_cast<uint32_t>(first.size()));
          sent = wire.send_all(message('p', payload + first));
        }
        break;
      }
      case 11: {  // SASLContinue: server-first, or the empty challenge that asks for the client-first
        if (body.size() == 4 && extras.scram_no_initial_response) {
          sent = wire.send_all(message('p', "n,," + scram.client_first_bare));
          break;
        }
        out.scram_server_first = body.substr(4);
        auto final_msg = scram.final_message(body.substr(4));
        if (!final_msg) {
          out.message = "bad SCRAM server-first message";
          return out;
        }
        if (extras.scram_final_edit) final_msg = extras.scram_final_edit(*final_msg);
        sent = wire.send_all(message('p', *final_msg) + extras.after_proof);
        if (sent && !extras.after_proof.empty()) wire.shut_write();
        if (sent && extras.vanish_after_proof) {
          if (extras.vanish_delay_us > 0)
            std::this_thread::sleep_for(std::chrono::microseconds(extras.vanish_delay_us));
          wire.abandon(extras.reset_on_vanish);
          out.message = "closed after sending the SCRAM proof";
          return out;
        }
        break;
      }
      case 12:  // SASLFinal: check the server's signature
        if (scram_attribute(body.substr(4), 'v') != b64(scram.server_signature)) {
          out.message = "SCRAM server signature mismatch";
          return out;
        }
        break;
      default:
        out.message = "unsupported authentication request " + std::to_string(code);
        return out;
    }
    if (!sent) {
      out.message = "send failed during authentication";
      return out;
    }
  }
  if (out.message.empty() && !out.ok) out.message = "connection closed or timed out before ReadyForQuery";
  return out;
}

}  // namespace pgmux::test
