// ByteReader / ByteWriter: big-endian values, cstrings, bounds and the sticky failure flag.
#include <doctest/doctest.h>

#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"

using namespace pgmux::protocol;

namespace {
ByteVector raw(std::initializer_list<int> v) {
  ByteVector out;
  for (int b : v) out.push_back(std::byte(b));
  return out;
}
}  // namespace

TEST_CASE("ByteWriter writes big-endian values and cstrings") {
  ByteVector out;
  ByteWriter w(out);
  w.u8(0xab);
  w.i16(-2);
  w.i32(0x01020304);
  w.cstring("hi");
  w.bytes(std::string_view("xy"));
  CHECK(out == raw({0xab, 0xff, 0xfe, 1, 2, 3, 4, 'h', 'i', 0, 'x', 'y'}));
}

TEST_CASE("ByteWriter patches message lengths: tag excluded, length field included") {
  ByteVector out;
  ByteWriter w(out);
  w.begin_message('Q');
  w.cstring("ab");
  w.end_message();
  CHECK(out == raw({'Q', 0, 0, 0, 7, 'a', 'b', 0}));
  w.begin_untagged();
  w.i32(1);
  w.end_message();
  CHECK(out.size() == 16);
  CHECK(load_be32(out.data() + 8) == 8);
}

TEST_CASE("ByteReader reads what ByteWriter wrote") {
  ByteVector out;
  ByteWriter w(out);
  w.u8(7);
  w.i16(-300);
  w.i32(-5);
  w.i32(int32_t(0xdeadbeef));
  w.cstring("name");
  w.cstring("");
  w.bytes(std::string_view("rest"));
  ByteReader r(out);
  CHECK(r.u8() == 7);
  CHECK(r.i16() == -300);
  CHECK(r.i32() == -5);
  CHECK(r.u32() == 0xdeadbeefu);
  CHECK(r.cstring() == "name");
  CHECK(r.cstring() == "");
  CHECK(r.remaining() == 4);
  CHECK(as_chars(r.rest()) == "rest");
  CHECK(r.ok());
  CHECK(r.at_end());
}

TEST_CASE("ByteReader fails on short input and stays failed") {
  auto data = raw({1, 2, 3});
  ByteReader r(data);
  CHECK(r.i32() == 0);
  CHECK_FALSE(r.ok());
  CHECK(r.u8() == 0);  // would fit, but the reader is already failed
  CHECK(r.rest().empty());
  CHECK(r.cstring().empty());
}

TEST_CASE("ByteReader cstring without terminator fails") {
  auto data = raw({'a', 'b'});
  ByteReader r(data);
  CHECK(r.cstring().empty());
  CHECK_FALSE(r.ok());
}

TEST_CASE("ByteReader bytes(n) bounds") {
  auto data = raw({1, 2, 3, 4});
  {
    ByteReader r(data);
    CHECK(r.bytes(4).size() == 4);
    CHECK(r.at_end());
    CHECK(r.ok());
  }
  {
    ByteReader r(data);
    CHECK(r.bytes(5).empty());
    CHECK_FALSE(r.ok());
  }
  {
    ByteReader r(data);
    CHECK(r.bytes(-1).empty());
    CHECK_FALSE(r.ok());
  }
  {
    ByteReader r(data);
    CHECK(r.bytes(0).empty());
    CHECK(r.ok());
  }
}

TEST_CASE("ByteReader over an empty span") {
  ByteReader r(ByteView{});
  CHECK(r.at_end());
  CHECK(r.rest().empty());
  CHECK(r.ok());
  CHECK(r.i16() == 0);
  CHECK_FALSE(r.ok());
}
