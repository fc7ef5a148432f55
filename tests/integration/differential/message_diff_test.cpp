// The comparison logic on hand-built captures (no cluster needed).
#include <doctest/doctest.h>

#include "protocol/backend_messages.hpp"
#include "tests/integration/differential/message_diff.hpp"

namespace pgmux::difftest {
namespace {

BackendMessage frame_of(const ByteVector& whole) {
  // whole = tag + int32 length + body, as the builders write it
  BackendMessage m;
  m.tag = static_cast<char>(whole[0]);
  m.body.assign(whole.begin() + 5, whole.end());
  return m;
}

Capture login_capture(int32_t pid, int32_t key, bool swap_params) {
  Capture c;
  auto add = [&](const ByteVector& v, const char* step) {
    c.messages.push_back(frame_of(v));
    c.step_of.emplace_back(step);
  };
  ByteVector a, b, k, z, n;
  protocol::build_parameter_status(a, "TimeZone", "UTC");
  protocol::build_parameter_status(b, "application_name", "x");
  protocol::build_backend_key_data(k, pid, key);
  protocol::build_ready_for_query(z, 'I');
  add(swap_params ? b : a, "login");
  add(swap_params ? a : b, "login");
  add(k, "login");
  add(z, "login");
  // NotificationResponse: pid, channel, payload
  n = {std::byte{'A'}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{10}};
  for (int i = 0; i < 4; ++i) n.push_back(std::byte(pid >> (24 - 8 * i)));
  n.push_back(std::byte{'c'});
  n.push_back(std::byte{0});
  add(n, "#1");
  return c;
}

}  // namespace

TEST_CASE("normalize zeroes keys and notification pids, sorts startup parameters") {
  Capture direct = login_capture(1234, 99, false);
  Capture proxied = login_capture(777, -5, true);
  CHECK(first_difference(direct, proxied, "a", "b"));
  normalize(direct, {});
  normalize(proxied, {});
  CHECK_FALSE(first_difference(direct, proxied, "a", "b"));

  Capture strict_a = login_capture(1, 1, false);
  Capture strict_b = login_capture(1, 1, true);
  normalize(strict_a, {true});
  normalize(strict_b, {true});
  auto diff = first_difference(strict_a, strict_b, "direct", "pgmux");
  REQUIRE(diff);
  CHECK(diff->find("message #0") != std::string::npos);
  CHECK(diff->find("TimeZone") != std::string::npos);
}

TEST_CASE("first_difference reports a missing tail and run errors") {
  Capture a = login_capture(1, 1, false);
  Capture b = a;
  b.messages.pop_back();
  b.step_of.pop_back();
  b.error = "step #1: timed out";
  auto diff = first_difference(a, b, "direct", "pgmux");
  REQUIRE(diff);
  CHECK(diff->find("message #4") != std::string::npos);
  CHECK(diff->find("timed out") != std::string::npos);
  CHECK(tag_summary(a) == "Sx2 K Z A");
}

}  // namespace pgmux::difftest
