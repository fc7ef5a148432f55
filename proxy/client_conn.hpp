// One application connection: startup and authentication, then (session pooling) a linked server whose
// traffic it relays both ways. State changes go through set_state(), which also logs them at debug level.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "conf/config.hpp"
#include "proxy/cancel.hpp"
#include "proxy/client_auth.hpp"
#include "proxy/intrusive_list.hpp"
#include "proxy/session_params.hpp"
#include "protocol/startup.hpp"
#include "proxy/stream_conn.hpp"

namespace pgmux::proxy {

class Pool;
class ServerConn;
class Worker;

enum class ClientState { Startup, Auth, WaitingServer, Linked, Closing };
const char* to_string(ClientState s);

class ClientConn final : public StreamConn {
 public:
  ClientConn(Worker& worker, uint64_t id);

  bool accept(uv_stream_t* listener);
  uint64_t id() const { return id_; }
  ClientState state() const { return state_; }
  const std::string& peer() const { return peer_; }
  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  const SessionParams& wanted_params() const { return wanted_params_; }
  double created_at() const { return created_at_; }
  double wait_started() const { return wait_started_; }

  // From the pool.
  void on_server_ready(ServerConn* server);
  void on_server_unavailable(const std::string& sqlstate, const std::string& message, const std::string& detail);
  // From the linked server: it is gone (closed by PostgreSQL or by pgmux).
  void on_server_lost(bool error_already_sent);

  // Relays buffered client bytes to the linked server (also called when the server's write completes).
  void relay();

  // Sends a FATAL ErrorResponse and closes.
  void fail(const std::string& sqlstate, const std::string& message, const std::string& detail = {});

  ListNode wait_node;    // pool's waiting list
  ListNode worker_node;  // worker's list of all clients

 protected:
  void on_data() override;
  void on_read_end(int status) override;
  void on_write_error(int status) override;
  void on_forward_done() override;
  void on_closing() override;

 private:
  void set_state(ClientState s);
  void handle_startup();
  void handle_startup_message(const protocol::StartupMessage& startup);
  void handle_auth();
  void auth_succeeded();
  void finish_login(ServerConn* server);

  Worker& worker_;
  uint64_t id_;
  ClientState state_ = ClientState::Startup;
  std::string peer_;
  std::string user_;
  std::string database_;
  SessionParams wanted_params_;
  std::shared_ptr<const conf::Config> config_;  // the snapshot this client logged in under
  const conf::User* user_config_ = nullptr;
  std::unique_ptr<ClientAuth> auth_;
  Pool* pool_ = nullptr;
  ServerConn* server_ = nullptr;
  std::shared_ptr<CancelSlot> cancel_slot_;
  double created_at_ = 0;
  double wait_started_ = 0;
  size_t pass_remaining_ = 0;
  const char* close_reason_ = nullptr;
  int32_t cancel_key_pid_ = 0;
  bool logged_in_ = false;
};

}  // namespace pgmux::proxy
