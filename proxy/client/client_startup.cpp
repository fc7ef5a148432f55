// ClientConn before authentication: the startup-phase packets, read as PostgreSQL 15's postmaster reads them
// (ProcessStartupPacket). PostgreSQL is the oracle here: what it answers, pgmux answers, and where it closes
// without a word, so does pgmux (tests/integration/it_startup.cpp compares the two byte for byte).
#include "proxy/client/client_conn.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/startup.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/ops/admin/console.hpp"
#include "routing/sync_standby_names.hpp"

namespace pgmux::proxy {

namespace {

// A boolean as PostgreSQL's parse_bool reads it: true, yes, on, 1 and false, no, off, 0, any case, or a prefix of
// the word long enough to tell (t, y, f, n; on and of at least two letters). Nullopt for anything else.
std::optional<bool> postgres_bool(std::string_view value) {
  const auto prefix_of = [&](std::string_view word, size_t at_least) {
    return value.size() >= at_least && value.size() <= word.size() &&
           std::equal(value.begin(), value.end(), word.begin(),
                      [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
  };
  if (prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || value == "1") return true;
  if (prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || value == "0") return false;
  return std::nullopt;
}

}  // namespace

using namespace protocol;

void ClientConn::handle_startup() {
  while (open() && state_ == ClientState::Startup) {
    if (starts_direct_tls()) return;
    Frame frame = next_startup_frame(in_.unparsed_bytes());
    if (frame.status == FrameStatus::NeedMore) {
      in_.make_room(frame.length > 0 ? frame.length : 4);  // up to kMaxStartupPacket: always fits
      return;
    }
    if (frame.status == FrameStatus::Error) {
      refuse_startup_length(frame.length);
      return;
    }
    StartupPacket packet = parse_startup_packet(in_.unparsed_bytes().first(frame.total()), encryption_done_);
    in_.advance_parsed(frame.total());
    in_.consume_to(in_.parsed());
    if (std::holds_alternative<SslRequest>(packet)) {
      answer_ssl_request();
    } else if (std::holds_alternative<GssEncRequest>(packet)) {
      decline_encryption(false);
    } else if (const auto* cancel = std::get_if<CancelRequest>(&packet)) {
      forward_cancel(*cancel);
    } else if (const auto* error = std::get_if<StartupParseError>(&packet)) {
      refuse_startup(*error, frame.length);
    } else {
      handle_startup_message(std::get<StartupMessage>(packet));
    }
  }
}

// No TLS or GSS encryption on this listener: 'N' tells the client to go on in plain text. Like PostgreSQL,
// each kind is answered once, and bytes that arrived before the client could read the answer are refused: they
// were sent unencrypted whatever the answer, maybe by someone in the middle.
void ClientConn::decline_encryption(bool ssl) {
  (ssl ? encryption_done_.ssl : encryption_done_.gss) = true;
  send_owned(ByteVector{std::byte{'N'}});
  if (in_.unparsed() > 0) {
    fail({Failure::DataAfterEncryptionRequest, {ssl ? "SSL request" : "GSSAPI encryption request"}});
  }
}

// With tls.client enabled, 'S' and the handshake; else 'N'. Bytes sent behind the request before the answer
// are refused either way (PostgreSQL 15's check, CVE-2021-23214): they cannot have been encrypted.
void ClientConn::answer_ssl_request() {
  // PostgreSQL offers no TLS on a Unix-domain socket either: 'N', whatever tls.client says.
  std::shared_ptr<const TlsServerContext> context = over_unix_socket() ? nullptr : worker_.client_tls();
  if (!context) {
    decline_encryption(true);
    return;
  }
  // Inside TLS a GSSAPI encryption request is an unsupported protocol too (PostgreSQL goes on with both done).
  encryption_done_.ssl = true;
  encryption_done_.gss = true;
  send_owned(ByteVector{std::byte{'S'}});
  if (!open()) return;  // the 'S' could not be written (the client reset the connection): closed already
  if (in_.unparsed() > 0) {
    fail({Failure::DataAfterEncryptionRequest, {"SSL request"}});
    return;
  }
  in_.clear();
  start_tls(std::move(context));
}

// PostgreSQL 17's direct TLS: the connection opens with a ClientHello (a TLS handshake record, 0x16) instead of
// a startup packet, whose length word would start with 0x00. Only as the first bytes, and only when TLS is on
// (else the length check refuses them as PostgreSQL 15 would).
bool ClientConn::starts_direct_tls() {
  constexpr std::byte kTlsHandshakeRecord{0x16};
  if (tls() || encryption_done_.ssl || encryption_done_.gss || in_.unparsed() == 0 ||
      in_.unparsed_bytes()[0] != kTlsHandshakeRecord) {
    return false;
  }
  std::shared_ptr<const TlsServerContext> context = worker_.client_tls();
  if (!context || over_unix_socket()) return false;
  encryption_done_.ssl = true;
  encryption_done_.gss = true;
  direct_tls_ = true;
  const ByteVector hello(in_.unparsed_bytes().begin(), in_.unparsed_bytes().end());
  in_.clear();
  start_tls(std::move(context), hello);
  return true;
}

void ClientConn::on_tls_ready() {
  if (direct_tls_ && !tls()->alpn_negotiated()) {
    LOG_INFO("C-%llu %s: received direct SSL connection request without ALPN protocol negotiation extension",
             static_cast<unsigned long long>(id_), peer_.c_str());
    fail(Failure::TlsDirectWithoutAlpn);
    return;
  }
  LOG_DEBUG("C-%llu %s: TLS established (%s%s)", static_cast<unsigned long long>(id_), peer_.c_str(),
            tls()->description().c_str(), direct_tls_ ? ", direct" : "");
}

void ClientConn::on_tls_failed(const std::string& why) {
  LOG_INFO("C-%llu %s: could not accept SSL connection: %s", static_cast<unsigned long long>(id_), peer_.c_str(),
           why.c_str());
  fail(Failure::TlsHandshakeFailed);
}

// tls.client.mode at login, after PostgreSQL's order (the transport is checked before the role): plain text
// where TLS is required, then the client certificate verify-ca and verify-full want. A TLS client is held to
// the settings of the context it connected with, a plain-text one to the config of now.
bool ClientConn::transport_allowed() {
  if (!tls()) {
    // A Unix-domain socket cannot carry TLS, and is no network to protect (PgBouncer exempts it too); hba rules
    // of type local decide about such clients.
    if (!config_->tls.client.requires_tls() || over_unix_socket()) return true;
    fail({Failure::TlsRequired, {std::string(peer_host()), user_, database_}});
    return false;
  }
  // The context TLS started with (a client's TLS session is always a server-side one): its mode holds for
  // this client whatever a reload changed since.
  const conf::TlsClient& settings = static_cast<const TlsServerContext&>(tls()->context()).settings();
  if (!settings.wants_client_cert()) return true;
  if (!tls()->peer_certificate_valid()) {
    fail(Failure::TlsClientCertRequired);
    return false;
  }
  if (settings.mode == conf::TlsMode::VerifyFull && tls()->peer_common_name() != user_) {
    LOG_INFO("%s: client certificate CN \"%s\" is not the user name (tls.client.mode verify-full)",
             log_prefix().c_str(), escape_for_log(tls()->peer_common_name(), 64).c_str());
    fail({Failure::TlsClientCertMismatch, {user_}});
    return false;
  }
  return true;
}

// PostgreSQL logs an invalid startup-packet length and closes without sending anything; a client reads EOF.
void ClientConn::refuse_startup_length(uint32_t length) {
  LOG_INFO("C-%llu %s: invalid length of startup packet (length word %u; valid: 8 to %u, a CancelRequest 16): "
           "closed without a reply, as PostgreSQL does",
           static_cast<unsigned long long>(id_), peer_.c_str(), length, kMaxStartupPacket);
  fail(Failure::StartupFraming);
}

void ClientConn::refuse_startup(const StartupParseError& error, uint32_t length) {
  switch (error.refusal) {
    case StartupRefusal::BadLength:
      refuse_startup_length(length);
      return;
    case StartupRefusal::Layout:
      fail({Failure::StartupPacketInvalid, {error.message}});
      return;
    case StartupRefusal::UnsupportedProtocol: {
      FailureReport report(Failure::ProtocolUnsupported, {error.message});
      if (answers_in_protocol2(error.version_code)) report.answer_in_protocol2();
      fail(report);
      return;
    }
  }
}

// PostgreSQL 15 speaks protocol 3.0 and knows no "_pq_." option: to a client that asks for a newer 3.x or for
// options it says so (NegotiateProtocolVersion) and goes on with the login in 3.0. pgmux's own server
// connections speak 3.0 without options, so nothing of this reaches them.
void ClientConn::negotiate_protocol(const StartupMessage& startup) {
  ByteVector out;
  build_negotiate_protocol_version(out, kProtocolVersion3, startup.protocol_options);
  send_owned(std::move(out));
  std::string options;
  for (const std::string& option : startup.protocol_options) {
    options += options.empty() ? ", options " : " ";
    options += escape_for_log(option, 64);
  }
  LOG_INFO("C-%llu %s: client asked for protocol 3.%u%s: NegotiateProtocolVersion says 3.0, none of the options",
           static_cast<unsigned long long>(id_), peer_.c_str(),
           static_cast<unsigned>(startup.protocol_version & 0xffff), options.c_str());
}

// In PostgreSQL's order: the protocol negotiation, the user name, the parameters, then authentication.
void ClientConn::handle_startup_message(const StartupMessage& startup) {
  if (startup.needs_negotiation()) negotiate_protocol(startup);
  const std::string* user = startup.find("user");
  if (!user || user->empty()) {
    fail(Failure::NoUserName);
    return;
  }
  // As PostgreSQL's postmaster: the database defaults to the user name, then both are cut to NAMEDATALEN - 1
  // bytes (not at a character boundary), so a longer name meets the role, database and pool it names there.
  constexpr size_t kNameMax = 63;
  user_ = user->substr(0, kNameMax);
  const std::string* database = startup.find("database");
  database_ = (database && !database->empty() ? *database : *user).substr(0, kNameMax);
  // PostgreSQL's order: the user name, then whether the server takes another connection at all.
  const int max_client_conn = worker_.config()->max_client_conn;
  if (worker_.shared().clients.load() > max_client_conn) {
    fail({Failure::TooManyClients, {std::to_string(max_client_conn)}});
    return;
  }
  if (const std::string* replication = startup.find("replication")) {
    // PostgreSQL's reading: "database" or a boolean; false is an ordinary connection.
    const std::optional<bool> walsender = *replication == "database" ? true : postgres_bool(*replication);
    if (!walsender) {
      fail({Failure::ReplicationValueInvalid, {*replication}});
      return;
    }
    if (*walsender) {
      fail(Failure::ReplicationRefused);
      return;
    }
  }
  // PostgreSQL applies the options first and the packet's own parameters over them, whatever their order (pgjdbc
  // sends TimeZone before options): `options=-c TimeZone=...` does not override an explicit TimeZone.
  for (const auto& [name, value] : startup.parameters) {
    if (name == "options" && !parse_options_parameter(value, session_.wanted_params)) {
      fail(Failure::OptionsUnsupported);
      return;
    }
  }
  for (const auto& [name, value] : startup.parameters) {
    if (name != "options" && !is_connection_key(name)) session_.wanted_params.set(name, value);
  }
  // PostgreSQL 15 keeps printable ASCII of an application_name and reports '?' for each other byte: the value
  // pgmux asks of servers is that one (a SET of the bytes as given, not valid UTF-8, failed with 22021 and refused
  // the login in session pooling).
  if (const std::string* name = session_.wanted_params.find("application_name")) {
    std::string clean = *name;
    std::replace_if(clean.begin(), clean.end(), [](char c) { return c < 32 || c > 126; }, '?');
    if (clean != *name) session_.wanted_params.set("application_name", clean);
  }
  // A session that starts with its own synchronous_commit may commit without waiting for the standbys that apply
  // every commit (routing::commits_wait_for_apply).
  for (const auto& entry : session_.wanted_params.entries()) {
    if (routing::names_commit_wait_setting(entry.first)) session_.route.commits_may_skip_apply = true;
  }

  config_ = worker_.config();
  // PgBouncer's tools (its Prometheus exporters) open the console as database "pgbouncer": unless a database of
  // that name is configured, that is pgmux's console, and the hba rules and the login see it as "pgmux".
  if (database_ == "pgbouncer" &&
      std::none_of(config_->databases.begin(), config_->databases.end(),
                   [](const conf::Database& d) { return d.name == "pgbouncer"; })) {
    database_ = AdminConsole::kDatabase;
  }
  if (!transport_allowed()) return;
  const conf::User* user_config = config_->find_user(user_);
  conf::AuthMethod method = user_config ? config_->effective_auth_method(*user_config) : config_->auth_method;
  if (!config_->hba.empty() && !apply_hba(&method)) return;
  if (!user_config && config_->auth_query.enabled()) {
    look_up_user(method);  // client_auth_query.cpp
    return;
  }
  start_authentication(user_config, method);
}

// The first hba rule matching the connection decides the method, or refuses it before any password exchange,
// as PostgreSQL's ClientAuthentication does. False when the connection was refused.
bool ClientConn::apply_hba(conf::AuthMethod* method) {
  conf::HbaRequest request;
  request.tls = tls_active();
  request.local = over_unix_socket();
  request.address = conf::parse_ip(peer_host()).value_or(std::array<uint8_t, 16>{});
  request.user = user_;
  request.database = database_;
  const int index = conf::match_hba(config_->hba, config_->groups, request);
  const char* encryption = request.tls ? "SSL encryption" : "no encryption";
  if (index < 0) {
    fail({Failure::NoHbaEntry, {std::string(peer_host()), user_, database_, encryption}});
    return false;
  }
  LOG_DEBUG("%s: hba rule %d matches (%s)", log_prefix().c_str(), index,
            conf::to_string(config_->hba[static_cast<size_t>(index)].method));
  switch (config_->hba[static_cast<size_t>(index)].method) {
    case conf::HbaMethod::Reject:
      fail({Failure::HbaRejected, {std::string(peer_host()), user_, database_, encryption}});
      return false;
    case conf::HbaMethod::Cert: {
      // As PostgreSQL 15: first a certificate that chains to ca_file at all (28000 "connection requires a valid
      // client certificate"), then its common name must be the user name (its default, clientname=CN).
      const std::optional<std::string> common_name = tls_client_common_name();
      if (!common_name) {
        fail(Failure::TlsClientCertRequired);
        return false;
      }
      if (*common_name != user_) {
        fail({Failure::CertAuthFailed, {user_}});
        return false;
      }
      *method = conf::AuthMethod::Trust;
      return true;
    }
    case conf::HbaMethod::Trust: *method = conf::AuthMethod::Trust; return true;
    case conf::HbaMethod::Md5: *method = conf::AuthMethod::Md5; return true;
    case conf::HbaMethod::ScramSha256: *method = conf::AuthMethod::ScramSha256; return true;
  }
  return true;
}

// A user the config does not have is asked for a password all the same (the method's exchange, run to its end
// against a mock secret): PostgreSQL answers an unknown role exactly as a wrong password. So is a user whose
// login is refused (`refusal`: auth_query found no role, no password or an expired one).
void ClientConn::start_authentication(const conf::User* user, conf::AuthMethod method,
                                      std::optional<Failure> refusal) {
  user_config_ = user;
  // As PostgreSQL: md5 asked of a user whose stored password is a SCRAM secret runs SCRAM instead.
  if (method == conf::AuthMethod::Md5 && user &&
      conf::password_kind(user->password) == conf::PasswordKind::ScramSecret) {
    method = conf::AuthMethod::ScramSha256;
  }
  std::optional<ScramSecret> secret;
  if (user && method == conf::AuthMethod::ScramSha256) {
    if (const ScramSecret* cached = worker_.scram_secret_for(*user)) secret = *cached;
  }
  auth_ = std::make_unique<ClientAuth>(user_, user, method, std::move(secret),
                                       tls() ? tls()->server_certificate_hash() : std::string());
  if (refusal) auth_->refuse(*refusal);
  set_state(ClientState::Auth);
  apply_auth_step(auth_->start());
}

}  // namespace pgmux::proxy
