#include "proxy/control/etcd_watch.hpp"

#include <cctype>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include "protocol/auth_scram.hpp"
#include "proxy/net/log.hpp"

namespace pgmux::proxy {

namespace {
constexpr size_t kMaxHead = 16 * 1024;
constexpr size_t kMaxMessage = 4 * 1024 * 1024;  // Patroni's key is a few dozen bytes; a bigger line is not ours
constexpr double kRetryDelay = 1;                // seconds from a broken watch to the next attempt

std::string string_field(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// etcd's JSON gateway writes 64-bit integers as strings and leaves zeros out.
int64_t int64_field(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (!it->is_string()) return 0;
  const std::string text = it->get<std::string>();
  int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

bool has_header(std::string_view head, std::string_view name_and_value) {
  std::string lower(head);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find(name_and_value) != std::string::npos;
}
}  // namespace

PatroniFailoverKey parse_patroni_failover(std::string_view value) {
  PatroniFailoverKey key;
  const nlohmann::json doc = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return key;
  key.leader = string_field(doc, "leader");
  key.candidate = string_field(doc, "member");
  auto at = doc.find("scheduled_at");
  key.scheduled = at != doc.end() && !at->is_null() && !(at->is_string() && at->get<std::string>().empty());
  if (key.scheduled) {
    key.scheduled_text = at->is_string() ? at->get<std::string>() : at->dump();
    key.scheduled_at = parse_iso8601(key.scheduled_text);
  }
  key.requested = !key.leader.empty() || !key.candidate.empty();
  return key;
}

namespace {
// A fixed-width field of decimal digits (from_chars alone would take a sign too) at `pos`, advanced past it.
bool take_number(std::string_view text, size_t* pos, size_t digits, int* out) {
  if (*pos + digits > text.size()) return false;
  *out = 0;
  for (size_t i = 0; i < digits; ++i) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    *out = *out * 10 + (c - '0');
  }
  *pos += digits;
  return true;
}

bool valid_date(int year, int month, int day) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1) return false;
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return day <= kDays[month - 1] + (month == 2 && leap ? 1 : 0);
}

bool take_char(std::string_view text, size_t* pos, std::string_view allowed) {
  if (*pos >= text.size() || allowed.find(text[*pos]) == std::string_view::npos) return false;
  ++*pos;
  return true;
}
}  // namespace

std::optional<double> parse_iso8601(std::string_view text) {
  size_t pos = 0;
  std::tm tm{};
  int year = 0, month = 0;
  if (!take_number(text, &pos, 4, &year) || !take_char(text, &pos, "-") || !take_number(text, &pos, 2, &month) ||
      !take_char(text, &pos, "-") || !take_number(text, &pos, 2, &tm.tm_mday) || !take_char(text, &pos, "T ") ||
      !take_number(text, &pos, 2, &tm.tm_hour) || !take_char(text, &pos, ":") ||
      !take_number(text, &pos, 2, &tm.tm_min) || !take_char(text, &pos, ":") ||
      !take_number(text, &pos, 2, &tm.tm_sec)) {
    return std::nullopt;
  }
  // Python's datetime has no leap second: Patroni never writes :60.
  if (!valid_date(year, month, tm.tm_mday) || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59) {
    return std::nullopt;
  }
  double fraction = 0;
  if (pos < text.size() && text[pos] == '.') {
    const size_t first = ++pos;
    for (double scale = 0.1; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos, scale /= 10) {
      fraction += (text[pos] - '0') * scale;
    }
    if (pos == first) return std::nullopt;
  }
  int offset = 0;  // seconds east of UTC
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else {
    if (pos >= text.size() || (text[pos] != '+' && text[pos] != '-')) return std::nullopt;
    const int sign = text[pos++] == '-' ? -1 : 1;
    int hours = 0, minutes = 0;
    if (!take_number(text, &pos, 2, &hours)) return std::nullopt;
    take_char(text, &pos, ":");
    if (!take_number(text, &pos, 2, &minutes) || hours > 23 || minutes > 59) return std::nullopt;
    offset = sign * (hours * 3600 + minutes * 60);
  }
  if (pos != text.size()) return std::nullopt;
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  const time_t utc = timegm(&tm);  // the fields as UTC; the offset is taken off below
  if (utc == static_cast<time_t>(-1)) return std::nullopt;
  return static_cast<double>(utc) - offset + fraction;
}

bool EtcdWatchStream::feed(std::string_view bytes, std::vector<Change>* changes, std::string* error) {
  in_.append(bytes);
  if (part_ == Part::Head) {
    if (!take_head(error)) return false;
    if (part_ == Part::Head) return true;  // more of the head to come
  }
  if (part_ == Part::Unchunked) {
    body_.append(in_);
    in_.clear();
  } else if (!take_chunks(error)) {
    return false;
  }
  return take_messages(changes, error);
}

bool EtcdWatchStream::take_head(std::string* error) {
  const size_t end = in_.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (in_.size() <= kMaxHead) return true;
    *error = "the response headers exceed 16 KiB";
    return false;
  }
  const std::string_view head(in_.data(), end);
  if (head.size() < 12 || head.substr(0, 5) != "HTTP/") {
    *error = "malformed status line";
    return false;
  }
  const size_t space = head.find(' ');
  const std::string_view status = space == std::string_view::npos ? std::string_view() : head.substr(space + 1, 3);
  if (status != "200") {
    *error = "HTTP status " + std::string(status) + " (is this etcd 3.4 or newer with its v3 gateway?)";
    return false;
  }
  part_ = has_header(head, "\ntransfer-encoding: chunked") ? Part::ChunkSize : Part::Unchunked;
  in_.erase(0, end + 4);
  return true;
}

bool EtcdWatchStream::take_chunks(std::string* error) {
  size_t at = 0;
  for (;;) {
    if (part_ == Part::ChunkSize) {
      const size_t eol = in_.find("\r\n", at);
      if (eol == std::string::npos) {
        if (in_.size() - at <= 64) break;
        *error = "malformed chunk size";
        return false;
      }
      const std::string_view line(in_.data() + at, eol - at);
      const std::string_view digits = line.substr(0, line.find(';'));  // a chunk extension is ignored
      size_t size = 0;
      const auto [stop, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
      if (digits.empty() || digits.size() > 8 || ec != std::errc{} || stop != digits.data() + digits.size()) {
        *error = "malformed chunk size";
        return false;
      }
      if (size == 0) {
        *error = "etcd ended the watch response";
        return false;
      }
      chunk_left_ = size;
      part_ = Part::ChunkData;
      at = eol + 2;
    } else if (part_ == Part::ChunkData) {
      const size_t take = std::min(chunk_left_, in_.size() - at);
      body_.append(in_, at, take);
      at += take;
      chunk_left_ -= take;
      if (chunk_left_ > 0) break;
      part_ = Part::ChunkEnd;
    } else {  // ChunkEnd
      if (in_.size() - at < 2) break;
      if (in_.compare(at, 2, "\r\n") != 0) {
        *error = "malformed chunk end";
        return false;
      }
      at += 2;
      part_ = Part::ChunkSize;
    }
  }
  in_.erase(0, at);
  return true;
}

bool EtcdWatchStream::take_messages(std::vector<Change>* changes, std::string* error) {
  size_t start = 0;
  for (size_t eol; (eol = body_.find('\n', start)) != std::string::npos; start = eol + 1) {
    if (!take_message(std::string_view(body_).substr(start, eol - start), changes, error)) return false;
  }
  body_.erase(0, start);
  if (body_.size() > kMaxMessage) {
    *error = "a watch message exceeds 4 MiB";
    return false;
  }
  return true;
}

bool EtcdWatchStream::take_message(std::string_view line, std::vector<Change>* changes, std::string* error) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty()) return true;
  const nlohmann::json doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    *error = "a watch message is not a JSON object: " + escape_for_log(line, 120);
    return false;
  }
  if (auto e = doc.find("error"); e != doc.end()) {
    *error = "etcd: " + escape_for_log(e->is_object() ? string_field(*e, "message") : e->dump(), 200);
    return false;
  }
  auto result = doc.find("result");
  if (result == doc.end() || !result->is_object()) return true;  // nothing we act on
  if (result->value("canceled", false)) {
    *error = "etcd canceled the watch: " + escape_for_log(string_field(*result, "cancel_reason"), 200);
    return false;
  }
  if (result->value("created", false)) created_ = true;
  auto events = result->find("events");
  if (events == result->end() || !events->is_array()) return true;
  for (const nlohmann::json& event : *events) {
    if (!event.is_object()) continue;
    Change change;
    change.deleted = string_field(event, "type") == "DELETE";  // etcd leaves PUT, the default, out
    if (auto kv = event.find("kv"); kv != event.end() && kv->is_object()) {
      change.revision = int64_field(*kv, "mod_revision");
      const std::string encoded = string_field(*kv, "value");  // left out when empty
      std::optional<std::string> value = protocol::base64_decode(encoded);
      if (!value) {
        *error = "a key's value is not base64";
        return false;
      }
      change.value = std::move(*value);
    }
    changes->push_back(std::move(change));
  }
  return true;
}

// One watch request, from the lookup of its host to the end of its response. Heap-allocated: it outlives its owner
// when abandoned, until libuv is done with its handle and requests.
struct EtcdWatch::Connection {
  EtcdWatch* owner;
  std::string url;
  conf::HttpUrl address;
  std::string request;
  EtcdWatchStream stream;
  bool looking_up = false;
  uv_getaddrinfo_t lookup{};
  uv_connect_t connect_req{};
  uv_write_t write_req{};
  UvTcp<Connection> tcp{this, &Connection::on_closed};
  char buffer[16 * 1024];

  Connection(EtcdWatch* watch, std::string url_text, conf::HttpUrl where, const std::string& key)
      : owner(watch), url(std::move(url_text)), address(std::move(where)) {
    const std::string body = nlohmann::json{{"create_request", {{"key", protocol::base64_encode(key)}}}}.dump();
    request = "POST /v3/watch HTTP/1.1\r\nHost: " + address.host + ":" + std::to_string(address.port) +
              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
              body;
  }

  void on_closed() { delete this; }
  // The owner lets go: nothing reaches it from now on, and the memory goes once libuv is done with it.
  void abandon();
  void start(uv_loop_t* loop);
  static void on_looked_up(uv_getaddrinfo_t* req, int status, struct addrinfo* res);
  static void on_connected(uv_connect_t* req, int status);
  static void on_written(uv_write_t* req, int status);
  static void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*);
};

void EtcdWatch::Connection::abandon() {
  owner = nullptr;
  if (looking_up) return;  // the lookup's callback frees it
  if (tcp.life() == UvTcp<Connection>::Life::Init) {
    tcp.close();
  } else if (tcp.life() != UvTcp<Connection>::Life::Closing) {
    delete this;
  }
}

void EtcdWatch::Connection::start(uv_loop_t* loop) {
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  lookup.data = this;
  const std::string port = std::to_string(address.port);
  const int rc = uv_getaddrinfo(loop, &lookup, on_looked_up, address.host.c_str(), port.c_str(), &hints);
  if (rc < 0) {
    owner->on_broken(url, std::string("cannot look up ") + address.host + ": " + uv_strerror(rc));
    return;
  }
  looking_up = true;
}

void EtcdWatch::Connection::on_looked_up(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  auto* self = static_cast<Connection*>(req->data);
  self->looking_up = false;
  if (self->owner == nullptr) {
    uv_freeaddrinfo(res);
    delete self;
    return;
  }
  if (status < 0 || res == nullptr) {
    uv_freeaddrinfo(res);
    self->owner->on_broken(self->url, "cannot look up " + self->address.host + ": " + uv_strerror(status));
    return;
  }
  int rc = self->tcp.init(req->loop);
  if (rc == 0) rc = uv_tcp_connect(&self->connect_req, self->tcp.get(), res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc < 0) self->owner->on_broken(self->url, std::string("cannot connect: ") + uv_strerror(rc));
}

void EtcdWatch::Connection::on_connected(uv_connect_t* req, int status) {
  Connection* self = UvTcp<Connection>::owner_of(req->handle);
  if (self->owner == nullptr) return;
  if (status < 0) {
    self->owner->on_broken(self->url, std::string("cannot connect: ") + uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(self->tcp.get(), 1);
  uv_tcp_keepalive(self->tcp.get(), 1, 10);  // a watch is silent for hours: notice a peer that vanished
  uv_buf_t buf = uv_buf_init(self->request.data(), static_cast<unsigned>(self->request.size()));
  int rc = uv_write(&self->write_req, self->tcp.stream(), &buf, 1, on_written);
  if (rc == 0) rc = uv_read_start(self->tcp.stream(), on_alloc, on_read);
  if (rc < 0) self->owner->on_broken(self->url, std::string("cannot send the watch request: ") + uv_strerror(rc));
}

void EtcdWatch::Connection::on_written(uv_write_t* req, int status) {
  Connection* self = UvTcp<Connection>::owner_of(req->handle);
  if (self->owner != nullptr && status < 0) {
    self->owner->on_broken(self->url, std::string("cannot send the watch request: ") + uv_strerror(status));
  }
}

void EtcdWatch::Connection::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  Connection* self = UvTcp<Connection>::owner_of(handle);
  *buf = uv_buf_init(self->buffer, sizeof self->buffer);
}

void EtcdWatch::Connection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  Connection* self = UvTcp<Connection>::owner_of(stream);
  if (self->owner == nullptr || nread == 0) return;
  if (nread < 0) {
    const int code = static_cast<int>(nread);
    self->owner->on_broken(self->url, code == UV_EOF ? "etcd closed the connection" : uv_strerror(code));
    return;
  }
  const bool was_created = self->stream.created();
  std::vector<EtcdWatchStream::Change> changes;
  std::string error;
  const bool ok = self->stream.feed(std::string_view(self->buffer, static_cast<size_t>(nread)), &changes, &error);
  if (!was_created && self->stream.created()) self->owner->on_watching(self->url);
  // Each callback may stop the watch: this object then stays alive until its close callback, with no owner.
  for (const EtcdWatchStream::Change& change : changes) {
    if (self->owner == nullptr) return;
    self->owner->deliver(change.deleted ? PatroniFailoverKey{} : parse_patroni_failover(change.value),
                         change.revision);
  }
  if (!ok && self->owner != nullptr) self->owner->on_broken(self->url, error);
}

EtcdWatch::EtcdWatch(uv_loop_t* loop, OnKey on_key, OnUp on_up)
    : loop_(loop), on_key_(std::move(on_key)), on_up_(std::move(on_up)), timer_(make_uv_handle<uv_timer_t>(this)) {
  timer_->init(loop_);
}

EtcdWatch::~EtcdWatch() {
  on_up_ = nullptr;  // its owner may be part way through its own destruction
  stop();
}

void EtcdWatch::deliver(const PatroniFailoverKey& key, int64_t revision) {
  if (revision != 0 && revision <= revision_) return;  // the key as it was before what was delivered already
  revision_ = std::max(revision_, revision);
  on_key_(key);
}

void EtcdWatch::configure(const conf::TopologySource& source) {
  if (source.kind != conf::TopologySourceKind::Patroni || source.etcd_urls.empty()) {
    stop();
    return;
  }
  std::string prefix = source.patroni_namespace;
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  prefix += "/" + source.patroni_scope;
  timeout_ = source.timeout;
  if (prefix + "/failover" == key_ && source.etcd_urls == urls_) return;
  stop();
  urls_ = source.etcd_urls;
  prefix_ = prefix;
  key_ = prefix + "/failover";
  next_url_ = 0;
  if (on_up_) on_up_(0);
  open_next();
}

void EtcdWatch::stop() {
  if (!key_.empty() && on_up_) on_up_(-1);
  key_.clear();
  revision_ = 0;
  read_.reset();
  uv_timer_stop(timer_->get());
  if (connection_ != nullptr) connection_->abandon();
  connection_ = nullptr;
}

void EtcdWatch::open_next() {
  const std::string& url = urls_[next_url_++ % urls_.size()];
  const std::optional<conf::HttpUrl> address = conf::parse_http_url(url);
  connection_ = new Connection(this, url, address.value_or(conf::HttpUrl{}), key_);
  uv_timer_start(timer_->get(), on_timer, static_cast<uint64_t>(std::llround(timeout_ * 1000)), 0);
  connection_->start(loop_);
}

void EtcdWatch::on_watching(const std::string& url) {
  uv_timer_stop(timer_->get());
  if (on_up_) on_up_(1);
  LOG_INFO("watching Patroni's failover key %s in etcd at %s: a switchover asked of Patroni is drained for",
           key_.c_str(), url.c_str());
  last_error_.clear();
  read_keys(url);
}

// One range read per watch opened, from the failover key to the leader key: the failover key as it is now (a
// watch reports changes from its start only: one made while none was open, a switchover scheduled before pgmux
// started), and whether Patroni keeps its keys here at all (warn_no_leader_key).
void EtcdWatch::read_keys(const std::string& url) {
  HttpRequestSpec spec;
  spec.url = conf::parse_http_url(url).value_or(conf::HttpUrl{});
  spec.method = "POST";
  spec.path = "/v3/kv/range";
  const std::string leader = prefix_ + "/leader";
  // Keys from <prefix>/failover up to and with <prefix>/leader: history and initialize lie between, a few KiB.
  spec.body = nlohmann::json{{"key", protocol::base64_encode(key_)},
                             {"range_end", protocol::base64_encode(leader + std::string(1, '\0'))}}
                  .dump();
  spec.timeout = timeout_;
  read_ = HttpCall::start(loop_, std::move(spec), [this, url, leader](HttpResult result) {
    read_.reset();
    const nlohmann::json doc = result.ok && result.status == 200
                                   ? nlohmann::json::parse(result.body, nullptr, /*allow_exceptions=*/false)
                                   : nlohmann::json();
    const auto header = doc.is_object() ? doc.find("header") : doc.end();
    if (header == doc.end() || !header->is_object()) {
      const std::string why = !result.ok             ? result.error
                              : result.status != 200 ? "HTTP status " + std::to_string(result.status)
                                                     : "no header in the answer";
      LOG_WARN("etcd at %s: reading %s failed (%s): what it held before the watch opened is not known",
               url.c_str(), key_.c_str(), why.c_str());
      return;
    }
    std::optional<std::string> failover;
    bool has_leader = false;
    const auto kvs = doc.find("kvs");  // left out when no key is in the range
    for (const nlohmann::json& kv : kvs != doc.end() && kvs->is_array() ? *kvs : nlohmann::json::array()) {
      const std::optional<std::string> name = kv.is_object() ? protocol::base64_decode(string_field(kv, "key"))
                                                             : std::nullopt;
      if (name == key_) failover = protocol::base64_decode(string_field(kv, "value"));
      if (name == leader) has_leader = true;
    }
    if (!has_leader) warn_no_leader_key(url, leader);
    // The store's revision at the read: the state as of then, older than any change the watch reports later.
    deliver(failover ? parse_patroni_failover(*failover) : PatroniFailoverKey{}, int64_field(*header, "revision"));
  });
}

// Patroni with etcd's v2 API (its etcd: section), or with another scope or namespace, keeps no keys where the watch
// looks, and the watch would wait for nothing.
void EtcdWatch::warn_no_leader_key(const std::string& url, const std::string& leader) {
  LOG_WARN("etcd at %s has no key %s: Patroni keeps its keys elsewhere (with an etcd: section instead of etcd3: "
           "it uses etcd's v2 API, which this watch cannot see; or its scope and namespace are not "
           "topology.patroni_scope and patroni_namespace), so a switchover asked of Patroni directly is not "
           "drained for",
           url.c_str(), leader.c_str());
}

void EtcdWatch::on_broken(std::string url, const std::string& why) {
  if (connection_ != nullptr) connection_->abandon();
  connection_ = nullptr;
  if (on_up_) on_up_(0);
  const std::string error = url + ": " + why;
  if (error != last_error_) {
    LOG_WARN("etcd watch of %s: %s; trying again every %g s (meanwhile a switchover asked of Patroni directly is "
             "not drained for: its running transactions end at the old primary's shutdown)",
             key_.c_str(), error.c_str(), kRetryDelay);
    last_error_ = error;
  }
  uv_timer_start(timer_->get(), on_timer, static_cast<uint64_t>(std::llround(kRetryDelay * 1000)), 0);
}

void EtcdWatch::on_timer(uv_timer_t* timer) {
  EtcdWatch* self = UvTimer<EtcdWatch>::owner_of(timer);
  if (self == nullptr || self->key_.empty()) return;
  if (self->connection_ == nullptr) {
    self->open_next();
  } else if (self->connection_->looking_up) {
    // A slow resolver: abandoning the lookup would start another beside it in libuv's thread pool, which the
    // probes' lookups share. Its own timeouts end it.
    uv_timer_start(timer, on_timer, static_cast<uint64_t>(std::llround(self->timeout_ * 1000)), 0);
  } else if (!self->connection_->stream.created()) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", self->timeout_);
    self->on_broken(self->connection_->url, std::string("no answer within ") + seconds + " s (topology.timeout)");
  }
}

}  // namespace pgmux::proxy
