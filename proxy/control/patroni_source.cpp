#include "proxy/control/patroni_source.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "proxy/net/log.hpp"

namespace pgmux::proxy {
namespace {

uint64_t to_ms(double seconds) { return static_cast<uint64_t>(std::llround(seconds * 1000)); }

std::string string_field(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Patroni writes tags as the YAML had them: true, "true" or 1 all mean set.
bool tag_set(const nlohmann::json& member, const char* tag) {
  auto tags = member.find("tags");
  if (tags == member.end() || !tags->is_object()) return false;
  auto it = tags->find(tag);
  if (it == tags->end()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number_integer()) return it->get<int64_t>() != 0;
  if (it->is_string()) return it->get<std::string>() == "true";
  return false;
}

}  // namespace

std::optional<routing::DcsCluster> parse_patroni_cluster(std::string_view body, std::string* error) {
  const nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    *error = "the /cluster answer is not a JSON object";
    return std::nullopt;
  }
  auto members = doc.find("members");
  if (members == doc.end() || !members->is_array()) {
    *error = "the /cluster answer has no \"members\" array";
    return std::nullopt;
  }
  routing::DcsCluster cluster;
  cluster.paused = doc.contains("pause") && doc["pause"].is_boolean() && doc["pause"].get<bool>();
  for (const nlohmann::json& m : *members) {
    if (!m.is_object()) continue;
    routing::DcsMember member;
    member.name = string_field(m, "name");
    member.role = string_field(m, "role");
    member.state = string_field(m, "state");
    member.host = string_field(m, "host");
    if (auto port = m.find("port"); port != m.end() && port->is_number_unsigned() && port->get<uint64_t>() <= 65535) {
      member.port = static_cast<uint16_t>(port->get<uint64_t>());
    }
    if (auto tl = m.find("timeline"); tl != m.end() && tl->is_number_unsigned()) {
      member.timeline = static_cast<uint32_t>(tl->get<uint64_t>());
    }
    member.noloadbalance = tag_set(m, "noloadbalance");
    if (member.name.empty()) continue;
    cluster.members.push_back(std::move(member));
  }
  return cluster;
}

PatroniSource::PatroniSource(uv_loop_t* loop, OnCluster on_cluster, OnFailure on_failure)
    : loop_(loop), on_cluster_(std::move(on_cluster)), on_failure_(std::move(on_failure)) {
  timer_ = make_uv_handle<uv_timer_t>(this);
  timer_->init(loop_);
}

PatroniSource::~PatroniSource() { stop(); }

void PatroniSource::configure(const conf::TopologySource& source) {
  const bool was_running = running_;
  const bool urls_changed = source.patroni_urls != source_.patroni_urls;
  source_ = source;
  if (source_.kind != conf::TopologySourceKind::Patroni || source_.patroni_urls.empty()) {
    stop();
    return;
  }
  if (urls_changed) {
    preferred_ = 0;
    // A request out indexes the old list: drop it (its round restarts at the next tick).
    if (call_) call_->cancel();
    call_.reset();
  }
  running_ = true;
  // Every tick starts a round unless one is out; the first one at once.
  uv_timer_start(timer_->get(), on_tick, was_running ? to_ms(source_.poll_interval) : 0, to_ms(source_.poll_interval));
}

void PatroniSource::stop() {
  running_ = false;
  uv_timer_stop(timer_->get());
  if (call_) call_->cancel();
  call_.reset();
}

void PatroniSource::poll_now() {
  if (!running_ || call_) return;
  uv_timer_start(timer_->get(), on_tick, 0, to_ms(source_.poll_interval));
}

void PatroniSource::on_tick(uv_timer_t* timer) {
  auto* self = UvTimer<PatroniSource>::owner_of(timer);
  if (self == nullptr || !self->running_ || self->call_) return;  // the last round is still out
  self->tried_in_round_ = 0;
  self->round_errors_.clear();
  self->ask(self->preferred_ % self->source_.patroni_urls.size());
}

void PatroniSource::ask(size_t url_index) {
  HttpRequestSpec spec;
  spec.url = conf::parse_http_url(source_.patroni_urls[url_index]).value_or(conf::HttpUrl{});
  spec.path = "/cluster";
  spec.timeout = source_.timeout;
  if (!source_.patroni_username.empty()) spec.basic_auth = source_.patroni_username + ":" + source_.patroni_password;
  ++tried_in_round_;
  call_ = HttpCall::start(loop_, std::move(spec),
                          [this, url_index](HttpResult result) { on_reply(url_index, std::move(result)); });
}

void PatroniSource::on_reply(size_t url_index, HttpResult result) {
  call_.reset();
  const std::string& url = source_.patroni_urls[url_index];
  std::string error;
  if (!result.ok) {
    error = result.error;
  } else if (result.status != 200) {
    error = "HTTP status " + std::to_string(result.status);
  } else if (std::optional<routing::DcsCluster> cluster = parse_patroni_cluster(result.body, &error)) {
    preferred_ = url_index;
    on_cluster_(std::move(*cluster), url);
    return;
  }
  LOG_DEBUG("Patroni at %s: GET /cluster failed: %s", url.c_str(), error.c_str());
  if (!round_errors_.empty()) round_errors_ += "; ";
  round_errors_ += url + ": " + error;
  if (tried_in_round_ < source_.patroni_urls.size()) {
    ask((url_index + 1) % source_.patroni_urls.size());  // the next member's API may answer
    return;
  }
  on_failure_(round_errors_);
}

}  // namespace pgmux::proxy
