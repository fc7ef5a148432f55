#include "proxy/client/cancel.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "protocol/startup.hpp"
#include "proxy/net/address.hpp"
#include "proxy/net/log.hpp"
#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy {

void CancelTarget::set_address(const sockaddr_storage& from) {
  address = {};
  if (from.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(from);
    std::memcpy(address.bytes.data(), &v4.sin_addr, sizeof v4.sin_addr);
    address.port = v4.sin_port;
    address.family = AF_INET;
  } else if (from.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(from);
    std::memcpy(address.bytes.data(), &v6.sin6_addr, sizeof v6.sin6_addr);
    address.scope_id = v6.sin6_scope_id;
    address.port = v6.sin6_port;
    address.family = AF_INET6;
  }
}

sockaddr_storage CancelTarget::socket_address() const {
  sockaddr_storage out{};
  if (address.family == AF_INET) {
    auto& v4 = reinterpret_cast<sockaddr_in&>(out);
    v4.sin_family = AF_INET;
    v4.sin_port = address.port;
    std::memcpy(&v4.sin_addr, address.bytes.data(), sizeof v4.sin_addr);
  } else if (address.family == AF_INET6) {
    auto& v6 = reinterpret_cast<sockaddr_in6&>(out);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = address.port;
    v6.sin6_scope_id = address.scope_id;
    std::memcpy(&v6.sin6_addr, address.bytes.data(), sizeof v6.sin6_addr);
  }
  return out;
}

void CancelSlot::set(const CancelTarget& target) {
  std::lock_guard guard(lock_);
  target_ = target;
  has_target_ = true;
}

std::optional<CancelTarget> CancelSlot::get() const {
  std::lock_guard guard(lock_);
  return has_target_ ? std::optional<CancelTarget>(target_) : std::nullopt;
}

uint16_t* CancelSlot::count_of(uint64_t server_id) {
  if (!in_flight_) return nullptr;
  for (size_t i = 0; i < kEntries; ++i) {
    if (in_flight_->count[i] > 0 && in_flight_->server[i] == server_id) return &in_flight_->count[i];
  }
  return nullptr;
}

// A cancel that cannot be counted is not sent: uncounted, its server could serve another client while it is on
// its way. That is a count at UINT16_MAX (a cancel already on its way there does the same job), or no free entry,
// which a client holding two servers at most never meets.
std::optional<CancelTarget> CancelSlot::begin_cancel() {
  std::lock_guard guard(lock_);
  if (!has_target_) return std::nullopt;
  if (!in_flight_) in_flight_ = std::make_unique<InFlight>();
  uint16_t* count = count_of(target_.server_id);
  for (size_t i = 0; i < kEntries && !count; ++i) {
    if (in_flight_->count[i] == 0) {
      in_flight_->server[i] = target_.server_id;
      count = &in_flight_->count[i];
    }
  }
  if (!count || *count == UINT16_MAX) return std::nullopt;
  ++*count;
  return target_;
}

void CancelSlot::end_cancel(uint64_t server_id) {
  std::lock_guard guard(lock_);
  if (uint16_t* count = count_of(server_id)) --*count;
}

bool CancelSlot::release(uint64_t server_id) {
  std::lock_guard guard(lock_);
  if (has_target_ && target_.server_id == server_id) has_target_ = false;
  uint16_t* count = count_of(server_id);
  if (!count) return false;
  *count = 0;  // the server is closed: nothing it serves from now on can be cancelled by them
  return true;
}

CancelRegistry::Key CancelRegistry::add(std::shared_ptr<CancelSlot> slot, int32_t process_id) {
  std::lock_guard lock(mutex_);
  if (process_id == 0) {
    next_pid_ = next_pid_ >= 0x7ffffff0 ? 1 : next_pid_ + 1;
    process_id = next_pid_;
  }
  int32_t secret = 0;
  do {
    RAND_bytes(reinterpret_cast<unsigned char*>(&secret), sizeof secret);
  } while (slots_.count(key_of(process_id, secret)));
  slots_[key_of(process_id, secret)] = std::move(slot);
  return {process_id, secret};
}

void CancelRegistry::remove(const Key& key) {
  std::lock_guard lock(mutex_);
  slots_.erase(key_of(key.process_id, key.secret_key));
}

std::shared_ptr<CancelSlot> CancelRegistry::find(int32_t process_id, int32_t secret_key) const {
  std::lock_guard lock(mutex_);
  auto it = slots_.find(key_of(process_id, secret_key));
  return it == slots_.end() ? nullptr : it->second;
}

size_t CancelRegistry::size() const {
  std::lock_guard lock(mutex_);
  return slots_.size();
}

namespace {

// One CancelRequest on its own connection, bounded by server_connect_timeout: a healthy server closes it within
// milliseconds, once it has signalled the backend, but a hung host may accept it and never answer, or never
// accept. The object goes once its socket and its timer have closed.
struct CancelSender {
  // Connecting: nothing sent yet. Sent: the request is written (or being written) and the connection open; its
  // close then means it reached the backend or never will. Abandoned: the timeout closed it after sending: the
  // request may still reach the backend (a hung host reads it when it wakes), so the slot keeps it counted and
  // the server serves no other client (CancelSlot::release).
  enum class Stage : uint8_t { Connecting, Sent, Abandoned };

  void finish() {
    tcp.close();
    timer.close();
    on_closed();  // handles that were never opened are closed at once, with no callback to wait for
  }
  const sockaddr& endpoint() const { return reinterpret_cast<const sockaddr&>(address); }
  void on_closed() {
    if (!tcp.closed() || !timer.closed()) return;
    if (slot && stage != Stage::Abandoned) slot->end_cancel(target.server_id);
    delete this;
  }

  UvTcp<CancelSender> tcp{this, &CancelSender::on_closed};
  UvTimer<CancelSender> timer{this, &CancelSender::on_closed};
  uv_connect_t connect{};
  uv_write_t write{};
  protocol::ByteVector packet;
  std::shared_ptr<CancelSlot> slot;
  CancelTarget target;
  sockaddr_storage address{};  // target.socket_address()
  double timeout_seconds = 0;
  Stage stage = Stage::Connecting;
  char scratch[64];  // PostgreSQL answers nothing; anything read lands here
};

void on_cancel_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  CancelSender* sender = UvTcp<CancelSender>::owner_of(handle);
  *buf = uv_buf_init(sender->scratch, sizeof sender->scratch);
}

// PostgreSQL closes the connection once it has signalled the backend: only then is the cancel done.
void on_cancel_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  if (nread < 0) UvTcp<CancelSender>::owner_of(stream)->finish();
}

void on_cancel_written(uv_write_t* req, int status) {
  auto* sender = static_cast<CancelSender*>(req->data);
  if (status < 0 || uv_read_start(sender->tcp.stream(), on_cancel_alloc, on_cancel_read) != 0) sender->finish();
}

void on_cancel_connected(uv_connect_t* req, int status) {
  auto* sender = static_cast<CancelSender*>(req->data);
  if (status == UV_ECANCELED) return;  // closed by the timeout, which said so
  if (status < 0) {
    LOG_WARN("cancel: could not connect to server S-%llu at %s: %s",
             static_cast<unsigned long long>(sender->target.server_id),
             endpoint_text(sender->endpoint()).c_str(), uv_strerror(status));
    sender->finish();
    return;
  }
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(sender->packet.data()),
                             static_cast<unsigned>(sender->packet.size()));
  sender->write.data = sender;
  sender->stage = CancelSender::Stage::Sent;
  if (uv_write(&sender->write, sender->tcp.stream(), &buf, 1, on_cancel_written) != 0) sender->finish();
}

void on_cancel_timeout(uv_timer_t* timer) {
  CancelSender* sender = UvTimer<CancelSender>::owner_of(timer);
  const CancelTarget& target = sender->target;
  const bool sent = sender->stage == CancelSender::Stage::Sent;
  LOG_WARN("cancel: server S-%llu at %s (backend pid %d) %s within %g s (server_connect_timeout): %s",
           static_cast<unsigned long long>(target.server_id), endpoint_text(sender->endpoint()).c_str(),
           target.process_id, sent ? "did not close the cancel request's connection" : "did not accept a connection",
           sender->timeout_seconds,
           sent ? "closed it; the request may still reach the backend, so that server will serve no other client"
                : "cancel request not sent");
  if (sent) sender->stage = CancelSender::Stage::Abandoned;
  sender->finish();
}

}  // namespace

void send_cancel_request(uv_loop_t* loop, const CancelTarget& target, double timeout_seconds,
                         std::shared_ptr<CancelSlot> slot) {
  auto* sender = new CancelSender;
  sender->slot = std::move(slot);
  sender->target = target;
  sender->address = target.socket_address();
  sender->timeout_seconds = timeout_seconds;
  protocol::build_cancel_request(sender->packet, target.process_id, target.secret_key);
  const auto timeout_ms = static_cast<uint64_t>(std::max(1.0, timeout_seconds * 1000));
  int rc = sender->tcp.init(loop);
  if (rc == 0) rc = sender->timer.init(loop);
  if (rc == 0) rc = uv_timer_start(sender->timer.get(), on_cancel_timeout, timeout_ms, 0);
  sender->connect.data = sender;
  if (rc == 0) rc = uv_tcp_connect(&sender->connect, sender->tcp.get(), &sender->endpoint(), on_cancel_connected);
  if (rc != 0) {
    LOG_WARN("cancel: could not start a connection to server S-%llu at %s: %s",
             static_cast<unsigned long long>(target.server_id), endpoint_text(sender->endpoint()).c_str(),
             uv_strerror(rc));
    sender->finish();
  }
}

}  // namespace pgmux::proxy
