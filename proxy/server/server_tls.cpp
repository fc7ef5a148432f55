// ServerConn's TLS towards its backend (the backend's sslmode, libpq's meanings): an SSLRequest before the
// startup packet; 'S' starts the handshake (the startup packet follows it, encrypted), 'N' means plain text in
// prefer and a failure from require on. Certificate checks (verify-ca, verify-full) are the context's.
#include "proxy/server/server_conn.hpp"

#include <cstdio>

#include "protocol/startup.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"

namespace pgmux::proxy {

bool ServerConn::request_tls() {
  tls_context_ = worker_.server_tls(pool_.backend().name);
  if (!tls_context_) return false;
  protocol::ByteVector out;
  protocol::build_ssl_request(out);
  awaiting_ssl_answer_ = true;
  send_owned(std::move(out));
  return true;
}

void ServerConn::answer_to_ssl_request() {
  if (in_.unparsed() == 0) return;
  const auto answer = static_cast<char>(in_.unparsed_bytes()[0]);
  in_.advance_parsed(1);
  in_.consume_to(in_.parsed());
  awaiting_ssl_answer_ = false;
  if (answer == 'S') {
    // Bytes behind the 'S' were not encrypted: libpq refuses them too (they could be someone else's).
    if (in_.unparsed() > 0) {
      fail({Failure::ServerTlsFailed, {"received unencrypted data after SSL response"}});
      return;
    }
    in_.clear();
    start_tls(tls_context_);
    return;
  }
  const conf::TlsMode mode = tls_context_->mode();
  tls_context_.reset();
  if (answer == 'N' && mode == conf::TlsMode::Prefer) {
    send_startup();
    return;
  }
  if (answer == 'N') {
    fail({Failure::ServerTlsRefused, {conf::to_string(mode)}});
    return;
  }
  // libpq's words; a byte that is not printable is shown in hex (it goes into a message and a log line).
  char shown[8];
  const auto byte = static_cast<unsigned char>(answer);
  std::snprintf(shown, sizeof shown, byte >= 0x20 && byte < 0x7f ? "%c" : "\\x%02x", byte);
  fail({Failure::ServerTlsFailed, {std::string("received invalid response to SSL negotiation: ") + shown}});
}

void ServerConn::on_tls_ready() {
  LOG_DEBUG("S-%llu backend %s: TLS established (%s)", static_cast<unsigned long long>(id()),
            pool_.backend().name.c_str(), tls()->description().c_str());
  tls_context_.reset();
  send_startup();
}

void ServerConn::on_tls_failed(const std::string& why) { fail({Failure::ServerTlsFailed, {why}}); }

}  // namespace pgmux::proxy
