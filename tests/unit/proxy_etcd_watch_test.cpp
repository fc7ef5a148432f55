// Patroni's failover key as etcd's v3 watch reports it (topology.etcd_urls): the key's value, the watch's chunked
// stream of JSON messages (fed as etcd 3.4 sent it on the test bed, whole and a byte at a time), what ends a watch,
// and one watch on a libuv loop against a one-shot peer.
#include <doctest/doctest.h>

#include <uv.h>

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "one_shot_server.hpp"
#include "protocol/auth_scram.hpp"
#include "proxy/control/etcd_watch.hpp"
#include "proxy/net/log.hpp"

using namespace pgmux::proxy;
using pgmux::test::OneShotServer;

namespace {

const std::string kHead =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nGrpc-Metadata-Content-Type: application/grpc\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";

// One chunk holding one watch message (etcd's gateway ends each with a newline).
std::string chunk(const std::string& message) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx", message.size() + 1);
  return std::string(size) + "\r\n" + message + "\n\r\n";
}

const std::string kCreated =
    chunk(R"({"result":{"header":{"cluster_id":"139","revision":"107","raft_term":"2"},"created":true}})");

const std::string kKey = R"("key":"L3NlcnZpY2UvcGdtdXgtdGVzdC9mYWlsb3Zlcg==")";  // /service/pgmux-test/failover

std::string put_event(const std::string& value) {
  return chunk(R"({"result":{"header":{"revision":"122"},"events":[{"kv":{)" + kKey +
               R"(,"create_revision":"45","mod_revision":"122","version":"3","value":")" +
               pgmux::protocol::base64_encode(value) + R"("}}]}})");
}

const std::string kDeleteEvent = chunk(R"({"result":{"header":{"revision":"130"},"events":[{"type":"DELETE","kv":{)" +
                                       kKey + R"(,"mod_revision":"130"}}]}})");

std::vector<EtcdWatchStream::Change> feed_all(EtcdWatchStream& stream, const std::string& bytes, size_t step,
                                              std::string* error) {
  std::vector<EtcdWatchStream::Change> changes;
  for (size_t at = 0; at < bytes.size(); at += step) {
    if (!stream.feed(std::string_view(bytes).substr(at, step), &changes, error)) break;
  }
  return changes;
}

}  // namespace

TEST_CASE("etcd watch: Patroni's failover key asks for a switchover, is scheduled, or is cleared") {
  PatroniFailoverKey key = parse_patroni_failover(R"({"leader":"node2","member":"node1"})");
  CHECK(key.requested);
  CHECK(key.leader == "node2");
  CHECK(key.candidate == "node1");
  CHECK_FALSE(key.scheduled);
  key = parse_patroni_failover(R"({"member":"node3","scheduled_at":"2026-12-04T01:00:00+00:00"})");
  CHECK(key.requested);
  CHECK(key.leader.empty());
  CHECK(key.scheduled);
  REQUIRE(key.scheduled_at);
  CHECK(*key.scheduled_at == 1796346000.0);  // date -d 2026-12-04T01:00:00Z +%s
  CHECK(key.scheduled_text == "2026-12-04T01:00:00+00:00");
  key = parse_patroni_failover(R"({"member":"node3","scheduled_at":"tomorrow"})");
  CHECK(key.scheduled);  // scheduled, at a time pgmux cannot read: logged, not drained for
  CHECK_FALSE(key.scheduled_at);
  CHECK_FALSE(parse_patroni_failover(R"({"member":"node3","scheduled_at":null})").scheduled);
  CHECK_FALSE(parse_patroni_failover("{}").requested);  // how Patroni clears it
  CHECK_FALSE(parse_patroni_failover("").requested);
  CHECK_FALSE(parse_patroni_failover("not json").requested);
}

TEST_CASE("etcd watch: scheduled_at as Patroni writes it (ISO 8601 with an offset)") {
  const double base = 1796346000.0;  // 2026-12-04T01:00:00Z
  CHECK(parse_iso8601("2026-12-04T01:00:00+00:00") == base);
  CHECK(parse_iso8601("2026-12-04T01:00:00Z") == base);
  CHECK(parse_iso8601("2026-12-04 01:00:00+00:00") == base);
  CHECK(parse_iso8601("2026-12-04T02:30:00+01:30") == base);  // east of UTC: earlier in UTC
  CHECK(parse_iso8601("2026-12-03T20:00:00-0500") == base);
  CHECK(parse_iso8601("2026-12-04T01:00:00.250000+00:00") == doctest::Approx(base + 0.25));
  CHECK(parse_iso8601("2024-02-29T00:00:00+00:00") == 1709164800.0);  // a leap day
  for (const char* bad : {"", "2026-12-04", "2026-12-04T01:00:00", "2026-12-04T01:00:00+0", "2026-13-04T01:00:00Z",
                          "2026-12-04T24:00:00Z", "2026-12-04T01:00:00Z trailing", "26-12-04T01:00:00Z",
                          "2026-12-04T01:00:00+25:00", "2026/12/04T01:00:00Z", "2026-12-04T-1:00:00Z",
                          "2026-12-04T01:-5:00Z", "2026-12-04T01:00:00+-1:00", "-123-12-04T01:00:00Z",
                          "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-04T01:00:60Z",
                          "2026-12-04T01:00:00.Z"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_iso8601(bad));
  }
}

TEST_CASE("etcd watch: the stream's head, chunks and messages, whole or a byte at a time") {
  const std::string bytes = kHead + kCreated + put_event(R"({"leader":"node2","member":"node1"})") +
                            put_event("{}") + kDeleteEvent;
  for (size_t step : {bytes.size(), size_t{1}, size_t{7}}) {
    CAPTURE(step);
    EtcdWatchStream stream;
    std::string error;
    const auto changes = feed_all(stream, bytes, step, &error);
    CHECK(error.empty());
    CHECK(stream.created());
    REQUIRE(changes.size() == 3);
    CHECK(changes[0].value == R"({"leader":"node2","member":"node1"})");
    CHECK_FALSE(changes[0].deleted);
    CHECK(changes[1].value == "{}");
    CHECK(changes[2].deleted);
    CHECK(changes[2].value.empty());
  }
}

TEST_CASE("etcd watch: what ends a watch says why") {
  const auto error_of = [](const std::string& bytes) {
    EtcdWatchStream stream;
    std::string error;
    feed_all(stream, bytes, bytes.size(), &error);
    return error;
  };
  CHECK(error_of("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n") ==
        "HTTP status 404 (is this etcd 3.4 or newer with its v3 gateway?)");
  CHECK(error_of("SSH-2.0-OpenSSH_9.2\r\n\r\n") == "malformed status line");
  CHECK(error_of(kHead + "zz\r\n") == "malformed chunk size");
  CHECK(error_of(kHead + kCreated + "0\r\n\r\n") == "etcd ended the watch response");
  const std::string compacted = R"({"result":{"canceled":true,"cancel_reason":"mvcc: required revision has been )"
                                R"(compacted"}})";
  CHECK(error_of(kHead + chunk(compacted)) ==
        "etcd canceled the watch: mvcc: required revision has been compacted");
  CHECK(error_of(kHead + chunk(R"({"error":{"grpc_code":7,"message":"permission denied"}})")) ==
        "etcd: permission denied");
  CHECK(error_of(kHead + chunk("[1,2]")) == "a watch message is not a JSON object: [1,2]");
  // Without the chunked coding, the body is read as it comes.
  EtcdWatchStream plain;
  std::vector<EtcdWatchStream::Change> changes;
  std::string error;
  CHECK(plain.feed("HTTP/1.1 200 OK\r\n\r\n{\"result\":{\"created\":true}}\n", &changes, &error));
  CHECK(plain.created());
}

namespace {

// Runs one EtcdWatch for the scope pgmux-test against 127.0.0.1:`port` on a loop of its own until `seconds` have
// passed (or on_key stopped it), and lets every handle close.
using OnKeyOf = std::function<void(EtcdWatch& watch, const PatroniFailoverKey& key)>;
void run_watch(uint16_t port, double seconds, const OnKeyOf& on_key, std::vector<int>* ups = nullptr) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    EtcdWatch* self = nullptr;
    EtcdWatch watch(&loop, [&](const PatroniFailoverKey& key) { on_key(*self, key); },
                    [&](int up) { if (ups) ups->push_back(up); });
    self = &watch;
    uv_timer_t end;
    uv_timer_init(&loop, &end);
    end.data = &watch;
    uv_timer_start(&end, [](uv_timer_t* t) {
      static_cast<EtcdWatch*>(t->data)->stop();
      uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
    }, static_cast<uint64_t>(seconds * 1000), 0);
    pgmux::conf::TopologySource source;
    source.kind = pgmux::conf::TopologySourceKind::Patroni;
    source.etcd_urls = {"http://127.0.0.1:" + std::to_string(port)};
    source.patroni_scope = "pgmux-test";
    source.patroni_namespace = "/service/";
    source.timeout = 0.5;
    watch.configure(source);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

// One key-value pair of a range answer, as etcd's gateway writes it.
std::string kv(const std::string& key, const std::string& value) {
  return R"({"key":")" + pgmux::protocol::base64_encode(key) + R"(","mod_revision":"5","value":")" +
         pgmux::protocol::base64_encode(value) + "\"}";
}

std::string http_json(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("etcd watch: asks etcd for the key under namespace and scope, and hands each change over") {
  OneShotServer etcd(kHead + kCreated + put_event(R"({"leader":"node1","member":"node2"})"));
  std::vector<PatroniFailoverKey> keys;
  std::vector<int> ups;  // pgmux_etcd_watch_up
  run_watch(etcd.port(), 5, [&](EtcdWatch& watch, const PatroniFailoverKey& key) {
    keys.push_back(key);
    watch.stop();  // from inside its own callback: the loop ends once its connection has closed
  }, &ups);
  CHECK(ups == std::vector<int>{0, 1, -1});  // opening, open, stopped
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].requested);
  CHECK(keys[0].leader == "node1");
  CHECK(keys[0].candidate == "node2");
  CHECK(etcd.request().find("POST /v3/watch HTTP/1.1\r\n") == 0);
  CHECK(etcd.request().find(R"({"create_request":{"key":")" +
                            pgmux::protocol::base64_encode("/service/pgmux-test/failover") + "\"}}") !=
        std::string::npos);
}

TEST_CASE("etcd watch: a watch where Patroni keeps no leader key is logged as watching nothing") {
  char path[] = "/tmp/pgmux-etcd-watch-test-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  const auto warned = [&](const std::string& range_answer) {
    OneShotServer etcd({kHead + kCreated, http_json(range_answer)});
    std::ofstream(path, std::ios::trunc).close();
    Log::configure(pgmux::conf::LogLevel::Warn, path);
    run_watch(etcd.port(), 0.4, [](EtcdWatch&, const PatroniFailoverKey&) {});
    Log::configure(pgmux::conf::LogLevel::Info, "");
    CHECK(etcd.request(1).find("POST /v3/kv/range HTTP/1.1\r\n") == 0);
    const std::string range = R"({"key":")" + pgmux::protocol::base64_encode("/service/pgmux-test/failover") +
                              R"(","range_end":")" +
                              pgmux::protocol::base64_encode(std::string("/service/pgmux-test/leader\0", 27)) + "\"}";
    CHECK(etcd.request(1).find(range) != std::string::npos);
    std::ifstream in(path);
    const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return log.find("has no key /service/pgmux-test/leader") != std::string::npos;
  };
  CHECK(warned(R"({"header":{"revision":"7"}})"));  // the gateway leaves kvs out when none is found
  CHECK(warned(R"({"header":{"revision":"7"},"kvs":[)" + kv("/service/pgmux-test/history", "[]") + "]}"));
  CHECK_FALSE(warned(R"({"header":{"revision":"7"},"kvs":[)" + kv("/service/pgmux-test/leader", "node1") + "]}"));
  ::unlink(path);
}

TEST_CASE("etcd watch: the key as it is when a watch opens, unless the watch already told of a later change") {
  const std::string scheduled = R"({"leader":"node1","member":"node2","scheduled_at":"2026-12-04T01:00:00+00:00"})";
  const auto keys_seen = [](const std::string& watch_stream, const std::string& range_answer) {
    OneShotServer etcd({kHead + kCreated + watch_stream, http_json(range_answer)});
    std::vector<PatroniFailoverKey> keys;
    run_watch(etcd.port(), 0.4, [&](EtcdWatch&, const PatroniFailoverKey& key) { keys.push_back(key); });
    return keys;
  };
  const std::string leader = kv("/service/pgmux-test/leader", "node1");
  // Written before the watch opened (a scheduled switchover asked for before pgmux started): read at once.
  auto keys = keys_seen("", R"({"header":{"revision":"200"},"kvs":[)" +
                                kv("/service/pgmux-test/failover", scheduled) + "," + leader + "]}");
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].scheduled_at);
  // None: a cleared key (a schedule made before a broken watch and flushed meanwhile is dropped).
  keys = keys_seen("", R"({"header":{"revision":"200"},"kvs":[)" + leader + "]}");
  REQUIRE(keys.size() == 1);
  CHECK_FALSE(keys[0].requested);
  // The watch's change (revision 122) is newer than the read's state (revision 110): the read is not delivered.
  keys = keys_seen(put_event(R"({"leader":"node1","member":"node2"})"), R"({"header":{"revision":"110"},"kvs":[)" +
                                                                          leader + "]}");
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].requested);
}
