// Cancel requests. Each client gets pgmux's own BackendKeyData; the registry maps it (thread-safely) to the
// server connection the client is using right now, so a CancelRequest arriving on any worker can be sent on.
#pragma once
#include <netinet/in.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace pgmux::proxy {

struct CancelTarget {
  sockaddr_storage address{};
  int32_t process_id = 0;
  int32_t secret_key = 0;
};

// Where one client's cancel should go; updated by the owning worker on every checkout, read by any worker.
class CancelSlot {
 public:
  void set(const CancelTarget& target);
  void clear();
  std::optional<CancelTarget> get() const;

 private:
  mutable std::mutex mutex_;
  std::optional<CancelTarget> target_;
};

class CancelRegistry {
 public:
  struct Key {
    int32_t process_id;
    int32_t secret_key;
  };
  Key add(std::shared_ptr<CancelSlot> slot);
  void remove(int32_t process_id);
  std::shared_ptr<CancelSlot> find(int32_t process_id, int32_t secret_key) const;

 private:
  mutable std::mutex mutex_;
  int32_t next_pid_ = 0;
  std::unordered_map<int32_t, std::pair<int32_t, std::shared_ptr<CancelSlot>>> slots_;
};

// Opens a connection to the target's server and sends a CancelRequest; cleans up after itself.
void send_cancel_request(uv_loop_t* loop, const CancelTarget& target);

}  // namespace pgmux::proxy
