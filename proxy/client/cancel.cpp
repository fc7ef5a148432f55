#include "proxy/client/cancel.hpp"

#include <openssl/rand.h>

#include <cstring>

#include "protocol/startup.hpp"
#include "proxy/net/log.hpp"
#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy {

void CancelTarget::set_address(const sockaddr_storage& from) {
  address = {};
  if (from.ss_family == AF_INET) std::memcpy(&address.v4, &from, sizeof address.v4);
  if (from.ss_family == AF_INET6) std::memcpy(&address.v6, &from, sizeof address.v6);
}

void CancelSlot::set(const CancelTarget& target) {
  std::lock_guard guard(lock_);
  target_ = target;
  has_target_ = true;
}

void CancelSlot::clear() {
  std::lock_guard guard(lock_);
  has_target_ = false;
}

std::optional<CancelTarget> CancelSlot::get() const {
  std::lock_guard guard(lock_);
  return has_target_ ? std::optional<CancelTarget>(target_) : std::nullopt;
}

uint16_t* CancelSlot::count_of(uint64_t server_id) {
  for (size_t i = 0; i < kEntries; ++i) {
    if (in_flight_count_[i] > 0 && in_flight_server_[i] == server_id) return &in_flight_count_[i];
  }
  return nullptr;
}

// A cancel that cannot be counted is not sent: uncounted, its server could serve another client while it is on
// its way. That is a count at UINT16_MAX (a cancel already on its way there does the same job), or no free entry,
// which a client holding two servers at most never meets.
std::optional<CancelTarget> CancelSlot::begin_cancel() {
  std::lock_guard guard(lock_);
  if (!has_target_) return std::nullopt;
  uint16_t* count = count_of(target_.server_id);
  for (size_t i = 0; i < kEntries && !count; ++i) {
    if (in_flight_count_[i] == 0) {
      in_flight_server_[i] = target_.server_id;
      count = &in_flight_count_[i];
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

// One CancelRequest on its own connection; the object goes once its socket has closed.
struct CancelSender {
  void on_closed() {
    if (slot) slot->end_cancel(server_id);
    delete this;
  }

  UvTcp<CancelSender> tcp{this, &CancelSender::on_closed};
  uv_connect_t connect{};
  uv_write_t write{};
  protocol::ByteVector packet;
  std::shared_ptr<CancelSlot> slot;
  uint64_t server_id = 0;  // the target's, for the slot
  char scratch[64];  // PostgreSQL answers nothing; anything read lands here
};

void on_cancel_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  CancelSender* sender = UvTcp<CancelSender>::owner_of(handle);
  *buf = uv_buf_init(sender->scratch, sizeof sender->scratch);
}

// PostgreSQL closes the connection once it has signalled the backend: only then is the cancel done.
void on_cancel_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  if (nread < 0) UvTcp<CancelSender>::owner_of(stream)->tcp.close();
}

void on_cancel_written(uv_write_t* req, int status) {
  auto* sender = static_cast<CancelSender*>(req->data);
  if (status < 0 || uv_read_start(sender->tcp.stream(), on_cancel_alloc, on_cancel_read) != 0) sender->tcp.close();
}

void on_cancel_connected(uv_connect_t* req, int status) {
  auto* sender = static_cast<CancelSender*>(req->data);
  if (status < 0) {
    LOG_WARN("cancel: could not connect to server: %s", uv_strerror(status));
    sender->tcp.close();
    return;
  }
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(sender->packet.data()),
                             static_cast<unsigned>(sender->packet.size()));
  sender->write.data = sender;
  if (uv_write(&sender->write, sender->tcp.stream(), &buf, 1, on_cancel_written) != 0) sender->tcp.close();
}

}  // namespace

void send_cancel_request(uv_loop_t* loop, const CancelTarget& target, std::shared_ptr<CancelSlot> slot) {
  auto* sender = new CancelSender;
  sender->slot = std::move(slot);
  sender->server_id = target.server_id;
  protocol::build_cancel_request(sender->packet, target.process_id, target.secret_key);
  sender->tcp.init(loop);
  sender->connect.data = sender;
  int rc = uv_tcp_connect(&sender->connect, sender->tcp.get(), &target.address.any,
                          on_cancel_connected);
  if (rc != 0) {
    LOG_WARN("cancel: could not start connection: %s", uv_strerror(rc));
    sender->tcp.close();
  }
}

}  // namespace pgmux::proxy
