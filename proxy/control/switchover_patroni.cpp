// SWITCHOVER with topology.source patroni: pgmux holds and drains as usual, then Patroni does the demotion and
// promotion (POST /switchover on the REST API that answered last), so its DCS, and every other pgmux that follows
// it, agree on the new leader. What Patroni answers decides the outcome:
//   200        switched over: await the target as the primary (the DCS names it and it left recovery)
//   4xx        refused (wrong leader, no such candidate, not healthy enough): nothing was done, cancel
//   5xx, none  unknown: fail, and let Patroni's next /cluster and the probes decide what pgmux does
#include <nlohmann/json.hpp>

#include "proxy/control/control.hpp"
#include "proxy/control/switchover.hpp"
#include "proxy/net/log.hpp"

namespace pgmux::proxy {

void Switchover::patroni_switchover() {
  set_step(Step::Demoting);
  const auto view = control_.shared().view.load();
  const std::string leader = routing::dcs_member_of(*view, static_cast<size_t>(old_primary_));
  const std::string candidate = routing::dcs_member_of(*view, static_cast<size_t>(target_));
  const std::optional<conf::HttpUrl> url = conf::parse_http_url(view->dcs.source);
  if (leader.empty() || candidate.empty() || !url) {
    cancel("Patroni has no member for " + (leader.empty() ? name_of(old_primary_) : name_of(target_)) +
               (url ? "" : " (no REST API has answered)"),
           "pgmux matches members by name, then by host and port; SHOW BACKENDS shows each backend's Patroni role");
    return;
  }
  HttpRequestSpec spec;
  spec.url = *url;
  spec.method = "POST";
  spec.path = "/switchover";
  spec.body = nlohmann::json{{"leader", leader}, {"candidate", candidate}}.dump();
  // Patroni answers once the new leader holds the key: up to about 2 * its loop_wait (10 s at least).
  const auto config = control_.config();
  spec.timeout = config->switchover.command_timeout;
  if (!config->topology.patroni_username.empty()) {
    spec.basic_auth = config->topology.patroni_username + ":" + config->topology.patroni_password;
  }
  LOG_INFO("switchover: asking Patroni at %s to switch over from %s to %s", view->dcs.source.c_str(), leader.c_str(),
           candidate.c_str());
  const uint64_t run = run_;
  const std::string source = view->dcs.source;
  patroni_call_ = HttpCall::start(control_.loop(), std::move(spec), [this, run, source](HttpResult result) {
    if (run != run_ || step_ != Step::Demoting) return;
    on_patroni_reply(source, result);
  });
}

void Switchover::on_patroni_reply(const std::string& url, const HttpResult& result) {
  patroni_call_.reset();
  const std::string said = escape_for_log(result.body, 300);
  if (!result.ok) {
    fail("Patroni at " + url + " did not answer POST /switchover: " + result.error,
         "patronictl list shows whether it switched over; pgmux follows whatever leader Patroni names");
    return;
  }
  if (result.status >= 400 && result.status < 500) {
    cancel("Patroni refused it (HTTP " + std::to_string(result.status) + "): " + said,
           "patronictl list shows the members' state and lag");
    return;
  }
  if (result.status != 200) {
    fail("Patroni answered HTTP " + std::to_string(result.status) + ": " + said,
         "patronictl list shows whether it switched over; pgmux follows whatever leader Patroni names");
    return;
  }
  notices_.push_back("Patroni: " + said);
  control_.prober().fence(static_cast<size_t>(old_primary_), old_timeline_,
                          "switched over to " + name_of(target_) +
                              " by Patroni: fenced until it reports as a standby on a timeline after " +
                              std::to_string(old_timeline_),
                          routing::BackendStatus::FenceStage::Closed);
  await_primary();
}

}  // namespace pgmux::proxy
