// Framers: need-more / frame / error, split input, several frames per buffer, bad lengths.
#include <doctest/doctest.h>

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/startup.hpp"

using namespace pgmux::protocol;

namespace {
ByteVector header(char tag, uint32_t length) {
  ByteVector out{std::byte(uint8_t(tag))};
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(std::byte((length >> shift) & 0xff));
  return out;
}
ByteVector untagged(uint32_t length) {
  ByteVector out;
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(std::byte((length >> shift) & 0xff));
  return out;
}
}  // namespace

TEST_CASE("next_frame: NeedMore below 5 bytes") {
  ByteVector msg;
  build_query(msg, "select 1");
  for (size_t n = 0; n < 5; ++n) {
    Frame f = next_frame(ByteView(msg).first(n));
    CHECK(f.status == FrameStatus::NeedMore);
    CHECK(f.error == FrameError::None);
  }
}

TEST_CASE("next_frame: Frame as soon as the header is there") {
  ByteVector msg;
  build_query(msg, "select 1");
  for (size_t n = 5; n <= msg.size(); ++n) {
    Frame f = next_frame(ByteView(msg).first(n));
    REQUIRE(f.status == FrameStatus::Frame);
    CHECK(f.tag == 'Q');
    CHECK(f.length == msg.size() - 1);
    CHECK(f.total() == msg.size());
    CHECK(f.header_size() == 5);
  }
}

TEST_CASE("next_frame: fed one byte at a time, then two frames in one buffer") {
  ByteVector stream;
  build_query(stream, "select 1");
  build_sync(stream);
  build_terminate(stream);
  // Byte-at-a-time: the caller appends and retries; it advances only on a whole message.
  ByteVector buf;
  std::vector<char> tags;
  for (std::byte b : stream) {
    buf.push_back(b);
    while (true) {
      Frame f = next_frame(buf);
      REQUIRE(f.status != FrameStatus::Error);
      if (f.status == FrameStatus::NeedMore || buf.size() < f.total()) break;
      tags.push_back(f.tag);
      buf.erase(buf.begin(), buf.begin() + std::ptrdiff_t(f.total()));
    }
  }
  CHECK(tags == std::vector<char>{'Q', 'S', 'X'});
  CHECK(buf.empty());

  // All at once.
  ByteView view(stream);
  tags.clear();
  while (!view.empty()) {
    Frame f = next_frame(view);
    REQUIRE(f.status == FrameStatus::Frame);
    REQUIRE(view.size() >= f.total());
    tags.push_back(f.tag);
    view = view.subspan(f.total());
  }
  CHECK(tags == std::vector<char>{'Q', 'S', 'X'});
}

TEST_CASE("next_frame: bad lengths") {
  for (uint32_t len : {0u, 1u, 3u}) {
    Frame f = next_frame(header('Q', len));
    CHECK(f.status == FrameStatus::Error);
    CHECK(f.error == FrameError::LengthTooSmall);
  }
  Frame huge = next_frame(header('Q', 0xffffffffu));
  CHECK(huge.status == FrameStatus::Error);
  CHECK(huge.error == FrameError::LengthTooLarge);
  CHECK(next_frame(header('Q', kDefaultMaxMessageSize)).status == FrameStatus::Frame);
  CHECK(next_frame(header('Q', kDefaultMaxMessageSize + 1)).error == FrameError::LengthTooLarge);
  // A custom limit.
  CHECK(next_frame(header('d', 100), 100).status == FrameStatus::Frame);
  CHECK(next_frame(header('d', 101), 100).error == FrameError::LengthTooLarge);
  // Exactly 4: an empty body is a whole message.
  Frame empty = next_frame(header('S', 4));
  CHECK(empty.status == FrameStatus::Frame);
  CHECK(empty.total() == 5);
  CHECK(std::string(to_string(FrameError::LengthTooLarge)).size() > 0);
}

TEST_CASE("next_frame: unknown tags are framed like any other") {
  for (int tag : {0x01, int('~'), 0x7f, 0xff}) {
    ByteVector msg = header(char(tag), 6);
    msg.push_back(std::byte{1});
    msg.push_back(std::byte{2});
    Frame f = next_frame(msg);
    CHECK(f.status == FrameStatus::Frame);
    CHECK(f.tag == char(tag));
    CHECK(f.total() == 7);
  }
}

TEST_CASE("next_startup_frame: NeedMore until the whole packet is present") {
  ByteVector pkt;
  build_startup_message(pkt, {{"user", "app"}, {"database", "db"}});
  for (size_t n = 0; n < pkt.size(); ++n) {
    Frame f = next_startup_frame(ByteView(pkt).first(n));
    CHECK(f.status == FrameStatus::NeedMore);
  }
  Frame f = next_startup_frame(pkt);
  REQUIRE(f.status == FrameStatus::Frame);
  CHECK(f.tag == 0);
  CHECK(f.length == pkt.size());
  CHECK(f.total() == pkt.size());
  CHECK(f.header_size() == 4);
}

TEST_CASE("next_startup_frame: an SSLRequest followed by more bytes") {
  ByteVector buf;
  build_ssl_request(buf);
  build_startup_message(buf, {{"user", "u"}});
  Frame f = next_startup_frame(buf);
  REQUIRE(f.status == FrameStatus::Frame);
  CHECK(f.total() == 8);
  Frame g = next_startup_frame(ByteView(buf).subspan(8));
  CHECK(g.status == FrameStatus::Frame);
  CHECK(g.total() == buf.size() - 8);
}

TEST_CASE("next_startup_frame: bad lengths are errors before waiting") {
  for (uint32_t len : {0u, 3u, 4u, 7u}) {
    Frame f = next_startup_frame(untagged(len));
    CHECK(f.status == FrameStatus::Error);
    CHECK(f.error == FrameError::LengthTooSmall);
  }
  for (uint32_t len : {kMaxStartupPacket + 1, 0x7fffffffu, 0xffffffffu}) {
    Frame f = next_startup_frame(untagged(len));
    CHECK(f.status == FrameStatus::Error);
    CHECK(f.error == FrameError::LengthTooLarge);
  }
  // Valid lengths with only the length present: NeedMore.
  CHECK(next_startup_frame(untagged(8)).status == FrameStatus::NeedMore);
  CHECK(next_startup_frame(untagged(kMaxStartupPacket)).status == FrameStatus::NeedMore);
  // PostgreSQL's limit: 10000 bytes after the length word.
  CHECK(next_startup_frame(untagged(10004)).status == FrameStatus::NeedMore);
  CHECK(next_startup_frame(untagged(10005)).error == FrameError::LengthTooLarge);
}

TEST_CASE("next_frame: a type byte of 0 is still a tagged message (its type byte counts in total())") {
  const ByteVector msg{std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{4}};
  Frame f = next_frame(ByteView(msg));
  REQUIRE(f.status == FrameStatus::Frame);
  CHECK(f.tag == 0);
  CHECK(f.tagged);
  CHECK(f.total() == 5);
  CHECK(f.header_size() == 5);
}
