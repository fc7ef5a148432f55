// topology.source patroni: asks Patroni's REST API for /cluster every poll_interval, from the first of
// topology.patroni_urls that answers (it stays with that one while it answers), and hands each answer, or why
// none came, to the prober's topology. Runs on the control loop; requests go through HttpCall.
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "proxy/control/http_client.hpp"
#include "proxy/net/uv_handle.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

// Patroni's /cluster body -> members; nullopt (with *error) when it is not that document.
std::optional<routing::DcsCluster> parse_patroni_cluster(std::string_view body, std::string* error);

class PatroniSource {
 public:
  using OnCluster = std::function<void(routing::DcsCluster cluster, const std::string& url)>;
  using OnFailure = std::function<void(const std::string& error)>;

  PatroniSource(uv_loop_t* loop, OnCluster on_cluster, OnFailure on_failure);
  ~PatroniSource();
  PatroniSource(const PatroniSource&) = delete;
  PatroniSource& operator=(const PatroniSource&) = delete;

  // Polls while `source` is patroni (from the next tick on, at once when it just became so); stops otherwise.
  void configure(const conf::TopologySource& source);
  void stop();
  // Asks now rather than at the next tick (a probe saw the primary go); no effect while a request is out.
  void poll_now();

 private:
  static void on_tick(uv_timer_t* timer);
  void ask(size_t url_index);
  void on_reply(size_t url_index, HttpResult result);

  uv_loop_t* loop_;
  OnCluster on_cluster_;
  OnFailure on_failure_;
  UvHandlePtr<uv_timer_t, PatroniSource> timer_;
  conf::TopologySource source_;
  bool running_ = false;
  size_t preferred_ = 0;             // the URL that answered last
  size_t tried_in_round_ = 0;        // URLs asked since the round began
  std::string round_errors_;         // what each of them said
  std::shared_ptr<HttpCall> call_;   // the request out, if any
};

}  // namespace pgmux::proxy
