// Cancel requests. Each client gets a BackendKeyData whose secret key is pgmux's own; the registry maps that key
// (thread-safely) to the server connection the client is using right now, so a CancelRequest arriving on any
// worker can be sent on. The process id is the real pid of the session's server in session pooling (so
// pg_backend_pid() and NOTIFY agree with it) and a number of pgmux's in transaction pooling: ids may repeat
// across backends and between the two kinds, so a key is the pair.
#pragma once
#include <netinet/in.h>
#include <uv.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace pgmux::proxy {

struct CancelTarget {
  // A backend is reached over TCP, so its address is IPv4 or IPv6, kept compact: every client's slot holds one (an
  // idle client's memory, issue 13), and a sockaddr_in6 is 28 bytes where these are 24. It becomes a socket
  // address again only when a cancel request is sent (socket_address).
  struct Address {
    std::array<uint8_t, 16> bytes{};  // IPv4: the first 4
    uint32_t scope_id = 0;            // IPv6: the zone of a link-local address
    uint16_t port = 0;                // network byte order
    uint8_t family = 0;               // AF_INET, AF_INET6; 0: none
  } address;
  int32_t process_id = 0;
  int32_t secret_key = 0;
  // The target's identity for the slot's count of cancels on their way: pgmux's id of the server connection
  // (ServerConn::id, unique in the process). The process id is not one (the primary and a standby may have
  // backends with the same pid), and address + port + pid in the slot's entries would make every slot 20 bytes
  // larger for the same (an idle client's memory).
  uint64_t server_id = 0;

  void set_address(const sockaddr_storage& from);
  sockaddr_storage socket_address() const;
};

// Where one client's cancel should go; updated by the owning worker on every checkout, read by any worker.
// A cancel request takes time to reach its server (a connection of its own, then PostgreSQL signals the backend):
// if the client gave the server back meanwhile, it would cancel the query of the server's next client. So the
// slot counts the cancel requests on their way to each of the client's servers, and a server given back while
// one may still reach it does not serve another client (release).
class CancelSlot {
 public:
  // owner_worker: the index of the worker that runs the client: a cancel request arriving on another worker is
  // handed to it (the client's state, which only its worker may read, decides what the cancel does).
  explicit CancelSlot(int owner_worker = 0) : owner_worker_(static_cast<uint16_t>(owner_worker)) {}
  int owner_worker() const { return owner_worker_; }
  void set(const CancelTarget& target);
  std::optional<CancelTarget> get() const;
  // A cancel request for the current target is sent: that target, counted as on its way until end_cancel
  // (nullopt: no target, or its count cannot go higher; nothing counted, nothing to send).
  std::optional<CancelTarget> begin_cancel();
  // The cancel begin_cancel returned for this server has surely ended: it reached the backend, or it never will.
  void end_cancel(uint64_t server_id);
  // The client lets go of the server with this id: no cancel can take it as a target from now on. True when a
  // cancel request sent to it may still be on its way; the server is then closed, never served to another
  // client, and the slot forgets its count (an end_cancel for it later changes nothing).
  bool release(uint64_t server_id);

 private:
  // The count of cancels on their way to this server, if it has one (an entry with a count above 0).
  uint16_t* count_of(uint64_t server_id);

  // A spin lock rather than a std::mutex: every client holds a slot (a mutex is 40 bytes of it), the critical
  // sections copy 48 bytes, and another worker reads a slot only for a cancel request, which is rare.
  class SpinLock {
   public:
    void lock() {
      while (flag_.test_and_set(std::memory_order_acquire)) std::this_thread::yield();
    }
    void unlock() { flag_.clear(std::memory_order_release); }

   private:
    std::atomic_flag flag_;
  };
  mutable SpinLock lock_;
  bool has_target_ = false;  // in the lock's padding
  const uint16_t owner_worker_;  // so is this
  // Cancels on their way, by server: a client holds two servers at most (primary, standby), and release frees
  // the entry of each server it lets go of (given back or lost), so two entries do. Allocated at the client's first
  // cancel request: most clients send none, and every idle client holds a slot.
  static constexpr size_t kEntries = 2;
  struct InFlight {
    uint16_t count[kEntries] = {};
    uint64_t server[kEntries] = {};
  };
  std::unique_ptr<InFlight> in_flight_;
  CancelTarget target_;
};

// Every client holds one (std::make_shared: 16 bytes of control block in the same allocation): 56 bytes keeps the
// pair in glibc malloc's 80-byte chunks (an idle client's memory, issue 13).
static_assert(sizeof(CancelSlot) <= 56, "CancelSlot grew: an idle client's memory");

class CancelRegistry {
 public:
  struct Key {
    int32_t process_id;
    int32_t secret_key;
  };
  // process_id 0: pgmux picks one (positive, like PostgreSQL's). The secret is random and makes the pair
  // unique among registered keys.
  Key add(std::shared_ptr<CancelSlot> slot, int32_t process_id = 0);
  void remove(const Key& key);
  std::shared_ptr<CancelSlot> find(int32_t process_id, int32_t secret_key) const;
  size_t size() const;

 private:
  static uint64_t key_of(int32_t process_id, int32_t secret_key) {
    return (uint64_t{static_cast<uint32_t>(process_id)} << 32) | static_cast<uint32_t>(secret_key);
  }

  mutable std::mutex mutex_;
  int32_t next_pid_ = 0;
  std::unordered_map<uint64_t, std::shared_ptr<CancelSlot>> slots_;  // by key_of(process_id, secret_key)
};

// Opens a connection to the target's server and sends a CancelRequest; cleans up after itself. The slot (if any)
// hears end_cancel once the server has closed that connection (PostgreSQL has signalled the backend by then), or
// the request surely never went. A connection still open after timeout_seconds (server_connect_timeout: a hung
// host) is closed with a warning; sent by then, the request stays counted until the client lets go of its server.
void send_cancel_request(uv_loop_t* loop, const CancelTarget& target, double timeout_seconds,
                         std::shared_ptr<CancelSlot> slot = nullptr);

}  // namespace pgmux::proxy
