#include "proxy/server/server_conn.hpp"

#include "protocol/auth_md5.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/startup.hpp"
#include "protocol/statement_naming.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/net/forward_batch.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

using namespace protocol;

const char* to_string(ServerState s) {
  switch (s) {
    case ServerState::Connecting: return "connecting";
    case ServerState::Login: return "login";
    case ServerState::Idle: return "idle";
    case ServerState::Internal: return "internal";
    case ServerState::Linked: return "active";
    case ServerState::Closing: return "closing";
  }
  return "?";
}

ServerConn::ServerConn(Worker& worker, Pool& pool, uint64_t id)
    : StreamConn(worker.loop()),
      PoolServer(id),
      server_statements(static_cast<size_t>(worker.config()->prepared_statements.max_per_server)),
      worker_(worker),
      pool_(pool) {
  pool_.server_created();
  count_bytes(&pool.byte_counters());
}

ServerConn::~ServerConn() { pool_.server_deleted(); }

void ServerConn::start_connect() {
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, tcp(), reinterpret_cast<const sockaddr*>(&address()), on_connected);
  if (rc != 0) {
    fail({rc == UV_ECONNREFUSED ? Failure::ServerConnectRefused : Failure::ServerConnectFailed, {uv_strerror(rc)}});
  }
}

void ServerConn::on_connected(uv_connect_t* req, int status) {
  auto* self = static_cast<ServerConn*>(req->data);
  if (!self->open()) return;
  if (status < 0) {
    const Failure failure = status == UV_ECONNREFUSED ? Failure::ServerConnectRefused : Failure::ServerConnectFailed;
    self->fail({failure, {uv_strerror(status)}});
    return;
  }
  uv_tcp_nodelay(self->tcp(), 1);
  uv_tcp_keepalive(self->tcp(), 1, 60);
  self->pool_.set_state(self, ServerState::Login);
  if (!self->request_tls()) self->send_startup();
  self->start_reading();
}

void ServerConn::send_startup() {
  ByteVector out;
  const ServerLogin& login = pool_.login();
  std::vector<std::pair<std::string, std::string>> parameters{{"user", login.user}, {"database", login.database}};
  for (const auto& entry : startup_params().entries()) parameters.push_back(entry);
  build_startup_message(out, parameters);
  send_owned(std::move(out));
}

void ServerConn::fail(FailureReport report) {
  if (!open()) return;
  LOG_WARN("S-%llu backend %s (%s) pool %s: %s", static_cast<unsigned long long>(id()), pool_.backend().name.c_str(),
           pool_.backend().text().c_str(), pool_.name().c_str(), escape_for_log(report.message(), 1000).c_str());
  Pool& pool = pool_;
  const bool was_logging_in = logging_in();
  close();
  if (was_logging_in) pool.on_server_failed(this, std::move(report));
}

void ServerConn::record_parameter(std::string_view name, std::string_view value) {
  params_.set(name, value);
  if (name == "default_transaction_read_only") default_read_only_ = value == "on";
}

void ServerConn::fail_timeout() {
  fail(Failure::ServerConnectTimeout);
}

void ServerConn::on_data() {
  switch (state()) {
    case ServerState::Login:
      if (awaiting_ssl_answer_) {
        answer_to_ssl_request();
        break;
      }
      consume_whole_messages(&ServerConn::handle_login_message);
      break;
    case ServerState::Internal:
    case ServerState::Idle:
      consume_whole_messages(&ServerConn::handle_internal_message);
      break;
    case ServerState::Linked:
      relay();
      break;
    case ServerState::Connecting:
    case ServerState::Closing:
      break;
  }
}

// Decodes whole messages one at a time; stops when the state changes under the handler (login finished and the
// server was handed to a client, or the connection closed) so the rest is handled by the new state.
void ServerConn::consume_whole_messages(void (ServerConn::*handler)(char, ByteView)) {
  const ServerState entry_state = state();
  while (open() && state() == entry_state) {
    Frame frame = next_frame(in_.unparsed_bytes(), worker_.max_message_size());
    if (frame.status == FrameStatus::NeedMore) break;
    if (frame.status == FrameStatus::Error) {
      fail({Failure::ServerInvalidMessage, {to_string(frame.error)}});
      return;
    }
    if (in_.unparsed() < frame.total()) {
      in_.make_room(frame.total());
      break;
    }
    ByteView body = in_.unparsed_bytes().subspan(5, frame.length - 4);
    in_.advance_parsed(frame.total());
    in_.consume_to(in_.parsed());
    (this->*handler)(frame.tag, body);
  }
  if (!open()) return;
  if (state() == ServerState::Linked) {
    relay();
    return;
  }
  in_.compact();
  in_.shrink_if_empty();
}

void ServerConn::handle_login_message(char tag, ByteView body) {
  switch (tag) {
    case backend::kAuthentication:
      handle_auth_request(body);
      return;
    case backend::kParameterStatus:
      if (auto ps = parse_parameter_status(body)) record_parameter(ps->name, ps->value);
      return;
    case backend::kBackendKeyData:
      if (auto key = parse_backend_key_data(body)) key_ = *key;
      return;
    case backend::kErrorResponse: {
      auto error = parse_error_fields(body);
      fail(error ? FailureReport::relayed(Failure::ServerLoginRefused, error->sqlstate, error->message)
                 : FailureReport::relayed(Failure::ServerLoginRefused, {}, "malformed error from server during login"));
      return;
    }
    case backend::kReadyForQuery:
      scram_.reset();
      tx_status_ = 'I';
      LOG_DEBUG("S-%llu pool %s: logged in to backend %s, server pid %d", static_cast<unsigned long long>(id()),
                pool_.name().c_str(), pool_.backend().name.c_str(), key_.process_id);
      pool_.on_login_done(this);
      return;
    default:
      return;  // NoticeResponse, NegotiateProtocolVersion: nothing to do
  }
}

void ServerConn::handle_auth_request(ByteView body) {
  auto request = parse_authentication(body);
  if (!request) {
    fail(Failure::ServerAuthMalformed);
    return;
  }
  const ServerLogin& login = pool_.login();
  const bool plaintext = !login.scram_secret && !is_md5_stored_hash(login.password);
  ByteVector out;
  switch (request->code) {
    case AuthCode::Ok:
      return;
    case AuthCode::CleartextPassword:
      if (!plaintext) {
        fail({Failure::ServerWantsCleartext, {login.user}});
        return;
      }
      build_password_message(out, login.password);
      break;
    case AuthCode::Md5Password: {
      if (request->payload.size() != 4 || login.scram_secret) {
        fail(login.scram_secret ? FailureReport(Failure::ServerWantsMd5, {login.user})
                                : FailureReport(Failure::ServerMd5SaltMalformed));
        return;
      }
      std::array<std::byte, 4> salt{};
      std::copy(request->payload.begin(), request->payload.end(), salt.begin());
      build_password_message(out, plaintext ? md5_client_response(login.password, login.user, salt)
                                            : md5_response_from_stored(login.password, salt));
      break;
    }
    case AuthCode::Sasl: {
      bool offered = false;
      for (auto mechanism : request->sasl_mechanisms) offered |= mechanism == "SCRAM-SHA-256";
      if (!offered) {
        fail(Failure::ServerNoSaslMechanism);
        return;
      }
      if (plaintext) {
        scram_.emplace(login.password);
      } else if (login.scram_secret && login.client_key) {
        scram_.emplace(*login.client_key, *login.scram_secret);
      } else {
        fail({Failure::ServerScramNoSecret, {login.user}});
        return;
      }
      build_sasl_initial_response(out, "SCRAM-SHA-256", scram_->client_first());
      break;
    }
    case AuthCode::SaslContinue: {
      if (!scram_) {
        fail(Failure::ServerUnexpectedSasl);
        return;
      }
      auto final_message = scram_->client_final(as_chars(request->payload));
      if (!final_message) {
        fail({Failure::ServerScramFailed, {scram_->error()}});
        return;
      }
      build_sasl_response(out, *final_message);
      break;
    }
    case AuthCode::SaslFinal:
      if (!scram_ || !scram_->verify_server_final(as_chars(request->payload))) {
        fail(Failure::ServerScramSignature);
      }
      return;
    default:
      fail({Failure::ServerAuthUnsupported, {std::to_string(static_cast<int>(request->code))}});
      return;
  }
  send_owned(std::move(out));
}

void ServerConn::run_internal(std::string sql, InternalDone done) {
  ByteVector out;
  build_query(out, sql);
  run_internal_messages(std::move(out), 1, std::move(done));
}

void ServerConn::run_internal_messages(ByteVector messages, int ready_count, InternalDone done,
                                       std::vector<std::string> described, int expected_failure) {
  owed_.push_internal(ready_count, std::move(done));
  owed_.back().internal->described = std::move(described);
  owed_.back().internal->expected_failure = expected_failure;
  pool_.set_state(this, ServerState::Internal);
  send_owned(std::move(messages));
  start_reading();
}

void ServerConn::handle_internal_message(char tag, ByteView body) {
  if (owed_.front_fate() == ReplyFate::CaptureOwn) {
    drop_orphan_capture(tag, body);
    return;
  }
  switch (tag) {
    case backend::kParameterStatus:
      if (auto ps = parse_parameter_status(body)) record_parameter(ps->name, ps->value);
      return;
    case backend::kErrorResponse: {
      note_fatal(body);
      auto error = parse_error_fields(body);
      const bool ours = state() == ServerState::Internal && owed_.front_fate() == ReplyFate::Internal;
      if (!ours || (error && error->severity == "FATAL")) {
        LOG_INFO("S-%llu backend %s: server closing connection: %s", static_cast<unsigned long long>(id()),
                 pool_.backend().name.c_str(), error ? escape_for_log(error->message, 1000).c_str() : "?");
      }
      InternalRun* run = ours ? owed_.front().internal.get() : nullptr;
      if (run) run->failed.push_back(run->readies_seen);
      if (error && run && run->error.empty() && run->readies_seen != run->expected_failure) {
        run->error_state = error->sqlstate;
        run->error = error->message;
        run->error_body.assign(body.begin(), body.end());
      }
      return;
    }
    case backend::kReadyForQuery: {
      if (state() != ServerState::Internal || owed_.front_fate() != ReplyFate::Internal) return;
      note_ready(body);
      ++owed_.front().internal->readies_seen;
      if (--owed_.front().readies > 0) return;
      // Popped before done runs: done may hand the server to another client.
      OwedReply finished = owed_.pop();
      InternalRun& run = *finished.internal;
      last_internal_error_ = std::move(run.error_body);
      last_internal_failed_ = std::move(run.failed);
      run.done(*this, run.error.empty(), run.error_state, run.error);
      return;
    }
    case backend::kParameterDescription:  // a Describe 'S' answers this first, then its RowDescription or NoData
      if (state() == ServerState::Internal && owed_.front_fate() == ReplyFate::Internal) {
        InternalRun& run = *owed_.front().internal;
        // After an error, a Describe answered may be another statement's than the first still listed (the one
        // that failed was never described): the run fails, and nothing is recorded.
        if (!run.error.empty()) return;
        run.describing = true;
        if (!run.described.empty()) record_parameter_types(run.described.front(), body);
      }
      return;
    case backend::kRowDescription:
    case backend::kNoData: {  // the answer to a Describe 'S' of a statement pgmux prepared here, or a query's rows
      if (state() != ServerState::Internal || owed_.front_fate() != ReplyFate::Internal) return;
      InternalRun& run = *owed_.front().internal;
      if (!run.describing || run.described.empty() || !run.error.empty()) return;  // rows of pgmux's (set_config)
      run.describing = false;
      record_shape(run.described.front(), tag == backend::kNoData ? ByteView() : body);
      run.described.erase(run.described.begin());
      return;
    }
    default:
      return;  // CommandComplete, NoticeResponse, NotificationResponse: pgmux's own query, nobody to tell
  }
}

// The reply to pgmux's query behind a PREPARE whose client has gone (reusable): nobody learns the types. A FATAL
// is logged as any; the connection's end follows.
void ServerConn::drop_orphan_capture(char tag, ByteView body) {
  if (tag == backend::kErrorResponse) {
    note_fatal(body);
  } else if (tag == backend::kParameterStatus) {
    if (auto ps = parse_parameter_status(body)) record_parameter(ps->name, ps->value);
  } else if (tag == backend::kReadyForQuery) {
    note_ready(body);
    owed_.pop();
  }
}

ServerConn::StatementDescription* ServerConn::description_to_record(const std::string& statement) {
  // This server's own maps: the description found may be written.
  return const_cast<StatementDescription*>(description_of(statement, pool_.transaction_pooling()));
}

void ServerConn::record_shape(const std::string& statement, ByteView row_description_body) {
  if (StatementDescription* described = description_to_record(statement)) {
    described->shape = result_shape(row_description_body);
  }
}

void ServerConn::record_parameter_types(const std::string& statement, ByteView parameter_description_body) {
  if (StatementDescription* described = description_to_record(statement)) {
    described->parameter_types.assign(parameter_description_body.begin(), parameter_description_body.end());
  }
}

void ServerConn::run_pool_query(std::string sql, QueryDone done) {
  run_internal(std::move(sql), [done = std::move(done)](ServerConn&, bool ok, const std::string& sqlstate,
                                                         const std::string& error) { done(ok, sqlstate, error); });
}

void ServerConn::forget_session() {
  applied_unreported.clear();
  server_statements.clear();
  server_closes.clear();
  sql_statements.clear();
}

void ServerConn::link(PoolClient* client) {
  client_ = static_cast<ClientConn*>(client);
  pass_remaining_ = 0;
  hidden_describe_ = 0;
  fatal_forwarded_ = false;
  pending_event_ = RelayEvent::None;
  applied_log = 0;
  session_dirty = false;
  // Empty after most links; clear() would still wipe each set's buckets.
  if (!prepared.empty()) prepared.clear();
  pending_closes.clear();
  block_resets.clear();
  if (!sql_statements.empty()) sql_statements.clear();
  tx_written_ = Written::Nothing;
}

int ServerConn::backend_index() const { return pool_.backend_index(); }

void ServerConn::unlink() { client_ = nullptr; }

PoolClient* ServerConn::linked_client() const { return client_; }

OwedReply& ServerConn::expect_reply(bool closes, bool extended) {
  last_request_ = worker_.now();
  return owed_.push_request(closes, extended, uv_hrtime());
}

// A query of pgmux's behind a PREPARE may still be owed (its client left right after the PREPARE): its reply
// ends before the reset queued behind it (session_changed), and handle_internal_message drops it.
bool ServerConn::reusable() const {
  return open() && !sending_finished() && owed_.only_captures() && tx_status_ == 'I' && pass_remaining_ == 0 &&
         in_.unparsed() == 0;
}

void ServerConn::on_read_end(int status) {
  LOG_INFO("S-%llu backend %s pool %s: server closed the connection (%s)", static_cast<unsigned long long>(id()),
           pool_.backend().name.c_str(), pool_.name().c_str(), status == UV_EOF ? "EOF" : uv_strerror(status));
  if (logging_in()) {
    fail(Failure::ServerClosedDuringLogin);
    return;
  }
  // The loop may not have read the ends of the backend's other connections yet: its idle ones are closed now, so
  // that a request sent again after this loss (ClientConn::run_again_after_loss) does not go to one of them. Not
  // for an idle server (no request to protect; a firewall's idle timeout ends one connection at a time), nor for one
  // whose end pgmux asked for (its client's end passed on: ClientConn::forward_end).
  if (client_ && !sending_finished() && ended_with_backend()) {
    worker_.close_idle_servers_to(pool_.backend_index(), id());
  }
  offer_held_error();
  close();
}

void ServerConn::on_write_error(int status) {
  LOG_WARN("S-%llu backend %s: write failed: %s", static_cast<unsigned long long>(id()), pool_.backend().name.c_str(),
           uv_strerror(status));
  close();
}

void ServerConn::on_closing() {
  ClientConn* client = client_;
  client_ = nullptr;
  const bool mid_message = pass_remaining_ > 0;
  if (owed_.front_fate() == ReplyFate::Internal) {
    OwedReply lost = owed_.pop();
    lost.internal->done(*this, false, sqlstate::kConnectionFailure, "server connection lost");
  }
  pool_.on_server_closing(this);
  if (client) client->on_server_lost(this, fatal_forwarded_, mid_message);
}

}  // namespace pgmux::proxy
