// topology.etcd_urls: watches Patroni's failover key in etcd, so that a switchover Patroni is asked for behind
// pgmux's back (patronictl switchover: a POST /switchover to Patroni's REST API, which writes the key) is seen the
// moment it is asked for. Patroni then checkpoints the old primary and stops it with a fast shutdown, which ends
// every transaction running there; on the test bed that leaves 0.4-0.6 s, time enough for pgmux to hold new write
// transactions and let the running ones finish, as its own SWITCHOVER does (Switchover::follow_patroni). Patroni's
// /cluster shows only a scheduled switchover, so polling it cannot see one in time.
//
// etcd's v3 API through its JSON gateway: POST /v3/watch answers with one long HTTP/1.1 response, chunked, one
// JSON message per line. A watch that breaks is opened again (the next URL) a second later; until one is open,
// nothing is drained in advance, as without etcd_urls. Plain HTTP without etcd authentication.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "proxy/control/http_client.hpp"
#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy {

// What Patroni's <namespace>/<scope>/failover key asks for.
struct PatroniFailoverKey {
  bool requested = false;  // a switchover (or failover) is asked for; false once Patroni clears the key
  std::string leader;      // the member to move away from ("" = whichever leads)
  std::string candidate;   // the member to move to ("" = Patroni chooses)
  bool scheduled = false;  // scheduled_at is set: Patroni acts at that time, not now
  std::optional<double> scheduled_at;  // that time, in seconds since the epoch (none: not set, or unreadable)
  std::string scheduled_text;          // as Patroni wrote it (for the log)
};
// The key's value (Patroni writes JSON such as {"leader":"node1","member":"node2"}, and {} to clear it).
PatroniFailoverKey parse_patroni_failover(std::string_view value);
// An ISO 8601 time with its offset, as Patroni writes scheduled_at (Python's isoformat():
// 2026-12-04T05:30:00+00:00, maybe with fractional seconds; Z and +hhmm accepted too): seconds since the epoch.
// None for anything else, a time without an offset included (whose zone pgmux would have to guess).
std::optional<double> parse_iso8601(std::string_view text);

// The watch's response, decoded as it arrives: status line and headers, the chunked coding, one JSON message per
// line, and each event in a message as the key's new value.
class EtcdWatchStream {
 public:
  struct Change {
    bool deleted = false;
    std::string value;  // the key's new value (decoded from base64)
    int64_t revision = 0;  // etcd's revision of the change (0: not given)
  };
  // Appends the changes these bytes complete to *changes. False (with *error) once the stream cannot go on: a
  // status other than 200, a malformed chunk or message, etcd canceling the watch or ending the response.
  bool feed(std::string_view bytes, std::vector<Change>* changes, std::string* error);
  bool created() const { return created_; }  // etcd has confirmed the watch

 private:
  enum class Part { Head, ChunkSize, ChunkData, ChunkEnd, Unchunked };
  bool take_head(std::string* error);
  bool take_chunks(std::string* error);
  bool take_messages(std::vector<Change>* changes, std::string* error);
  bool take_message(std::string_view line, std::vector<Change>* changes, std::string* error);

  Part part_ = Part::Head;
  std::string in_;    // received bytes not decoded yet
  std::string body_;  // decoded body after the last complete line
  size_t chunk_left_ = 0;
  bool created_ = false;
};

class EtcdWatch {
 public:
  using OnKey = std::function<void(const PatroniFailoverKey& key)>;
  // 1 once a watch is open, 0 while it is not (yet), -1 once stopped (not configured).
  using OnUp = std::function<void(int up)>;
  EtcdWatch(uv_loop_t* loop, OnKey on_key, OnUp on_up = nullptr);
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Watches while `source` is patroni with etcd_urls (afresh when the URLs or the key changed); stops otherwise.
  void configure(const conf::TopologySource& source);
  void stop();

 private:
  struct Connection;
  void open_next();
  void on_watching(const std::string& url);
  // `url` by value: the connection that holds the caller's copy goes first.
  void on_broken(std::string url, const std::string& why);
  // Once per watch opened: the failover key's value now, and whether Patroni's leader key is beside it.
  void read_keys(const std::string& url);
  void warn_no_leader_key(const std::string& url, const std::string& leader);
  // Hands the key to on_key_ unless what it was given already is newer (`revision` 0: unknown, handed on).
  void deliver(const PatroniFailoverKey& key, int64_t revision);
  static void on_timer(uv_timer_t* timer);

  uv_loop_t* loop_;
  OnKey on_key_;
  OnUp on_up_;
  std::vector<std::string> urls_;
  double timeout_ = 2;
  std::string prefix_;  // <namespace>/<scope>
  std::string key_;     // prefix_ + "/failover"; "" while stopped
  std::shared_ptr<HttpCall> read_;  // read_keys's request
  int64_t revision_ = 0;             // etcd's revision of the key's state last delivered
  size_t next_url_ = 0;
  Connection* connection_ = nullptr;  // the watch open or opening; it frees itself once libuv is done with it
  // While connection_ opens: its deadline. Without one: the retry after a broken watch.
  UvHandlePtr<uv_timer_t, EtcdWatch> timer_;
  std::string last_error_;  // logged once until a watch opens again
};

}  // namespace pgmux::proxy
