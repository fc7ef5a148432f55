// Statement renaming for transaction pooling: every statement-naming message is rewritten with a patched
// length (checked by re-framing the output and decoding each message), everything else is copied byte for
// byte, malformed batches are rejected without writing, and random bytes never crash.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/statement_rewrite.hpp"

using namespace pgmux::protocol;
using namespace std::string_view_literals;

namespace {

struct Msg {
  char tag;
  ByteView body;
  ByteView whole;
};

// Cuts a buffer into whole messages with the framer; fails the test on anything else.
std::vector<Msg> reframe(ByteView buf) {
  std::vector<Msg> msgs;
  size_t pos = 0;
  while (pos < buf.size()) {
    Frame f = next_frame(buf.subspan(pos));
    REQUIRE(f.status == FrameStatus::Frame);
    REQUIRE(pos + f.total() <= buf.size());
    ByteView whole = buf.subspan(pos, f.total());
    msgs.push_back({f.tag, whole.subspan(5), whole});
    pos += f.total();
  }
  return msgs;
}

// A renamer backed by a map that also records every name it was asked about.
struct Renamer {
  std::map<std::string, std::string, std::less<>> names;
  std::vector<std::string> asked;
  StatementRenamer fn() {
    return [this](std::string_view client) -> std::optional<std::string_view> {
      asked.emplace_back(client);
      auto it = names.find(client);
      if (it == names.end()) return std::nullopt;
      return std::string_view(it->second);
    };
  }
};

ByteVector bytes_of(std::string_view s) {
  ByteView b = as_bytes(s);
  return ByteVector(b.begin(), b.end());
}

// Everything in a Bind body after the statement name's NUL (formats, values, result formats).
ByteView bind_tail(ByteView body) {
  size_t nuls = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == std::byte{0} && ++nuls == 2) return body.subspan(i + 1);
  }
  FAIL("bind body without two names");
  return {};
}

// A Bind with binary and text parameter formats, a NULL, an embedded NUL in a value and result formats.
void build_rich_bind(ByteVector& out, std::string_view portal, std::string_view statement) {
  ByteVector body;
  auto put16 = [&](uint16_t v) { body.push_back(std::byte(v >> 8)); body.push_back(std::byte(v)); };
  auto put32 = [&](uint32_t v) { put16(uint16_t(v >> 16)); put16(uint16_t(v)); };
  auto put_str = [&](std::string_view s) { for (char c : s) body.push_back(std::byte(c)); };
  put_str(portal); body.push_back(std::byte{0});
  put_str(statement); body.push_back(std::byte{0});
  put16(2); put16(1); put16(0);                   // parameter formats: binary, text
  put16(3);                                       // three values
  put32(4); put32(42);                            // int4 42, binary
  put32(3); put_str("a\0b"sv);                    // text with an embedded NUL byte
  put32(0xFFFFFFFFu);                             // NULL
  put16(1); put16(1);                             // results: all binary
  out.push_back(std::byte('B'));
  const uint32_t len = uint32_t(body.size() + 4);
  for (int s = 24; s >= 0; s -= 8) out.push_back(std::byte(len >> s));
  out.insert(out.end(), body.begin(), body.end());
}

// One extended-protocol request touching every statement-naming message, plus portal variants.
ByteVector full_request(std::string_view stmt) {
  ByteVector b;
  build_parse(b, stmt, "select $1::int, $2", {23, 0});
  build_rich_bind(b, "p1", stmt);
  build_describe(b, 'S', stmt);
  build_describe(b, 'P', "p1");
  build_execute(b, "p1", 5);
  build_close(b, 'S', stmt);
  build_close(b, 'P', "p1");
  build_sync(b);
  return b;
}

}  // namespace

TEST_CASE("Every statement-naming message is renamed with its length patched") {
  for (std::string server_name : {std::string("pgmux_s_1"), std::string("x"), std::string(200, 'n')}) {
    CAPTURE(server_name);
    const ByteVector in = full_request("s1");
    Renamer r;
    r.names["s1"] = server_name;
    ByteVector out;
    REQUIRE(rewrite_statement_names(in, r.fn(), out));
    CHECK(r.asked == std::vector<std::string>{"s1", "s1", "s1", "s1"});

    const auto before = reframe(in);
    const auto after = reframe(out);
    REQUIRE(after.size() == before.size());
    CHECK(out.size() + 4 * 2 == in.size() + 4 * server_name.size());  // four names of 2 bytes replaced

    auto parse = parse_parse(after[0].body);
    REQUIRE(parse);
    CHECK(parse->statement == server_name);
    CHECK(parse->sql == "select $1::int, $2");
    CHECK(parse->parameter_types() == std::vector<int32_t>{23, 0});

    auto bind = parse_bind(after[1].body);
    REQUIRE(bind);
    CHECK(bind->portal == "p1");
    CHECK(bind->statement == server_name);
    ByteView tail_in = bind_tail(before[1].body), tail_out = bind_tail(after[1].body);
    CHECK(ByteVector(tail_in.begin(), tail_in.end()) == ByteVector(tail_out.begin(), tail_out.end()));

    auto describe_s = parse_describe(after[2].body);
    REQUIRE(describe_s);
    CHECK(describe_s->kind == 'S');
    CHECK(describe_s->name == server_name);

    auto close_s = parse_close(after[5].body);
    REQUIRE(close_s);
    CHECK(close_s->kind == 'S');
    CHECK(close_s->name == server_name);

    // Portal-side and non-statement messages are byte-identical.
    for (size_t i : {3u, 4u, 6u, 7u}) {
      CAPTURE(i);
      CHECK(after[i].tag == before[i].tag);
      CHECK(ByteVector(after[i].whole.begin(), after[i].whole.end()) ==
            ByteVector(before[i].whole.begin(), before[i].whole.end()));
    }
  }
}

TEST_CASE("The unnamed statement is never offered to rename and stays untouched") {
  const ByteVector in = full_request("");
  Renamer r;
  r.names[""] = "should_not_happen";
  ByteVector out;
  REQUIRE(rewrite_statement_names(in, r.fn(), out));
  CHECK(r.asked.empty());
  CHECK(out == in);
}

TEST_CASE("nullopt keeps a message as is; only mapped names change") {
  ByteVector in;
  build_parse(in, "keep", "select 1");
  build_parse(in, "swap", "select 2");
  build_bind(in, "", "keep", {std::string("1")});
  build_bind(in, "", "swap");
  build_sync(in);
  Renamer r;
  r.names["swap"] = "pgmux_s_7";
  ByteVector out;
  REQUIRE(rewrite_statement_names(in, r.fn(), out));
  CHECK(r.asked == std::vector<std::string>{"keep", "swap", "keep", "swap"});

  ByteVector expected;
  build_parse(expected, "keep", "select 1");
  build_parse(expected, "pgmux_s_7", "select 2");
  build_bind(expected, "", "keep", {std::string("1")});
  build_bind(expected, "", "pgmux_s_7");
  build_sync(expected);
  CHECK(out == expected);
}

TEST_CASE("Portal names are never renamed, even when they equal a statement name") {
  ByteVector in;
  build_bind(in, "s1", "other");
  build_describe(in, 'P', "s1");
  build_execute(in, "s1");
  build_close(in, 'P', "s1");
  Renamer r;
  r.names["s1"] = "pgmux_s_1";
  ByteVector out;
  REQUIRE(rewrite_statement_names(in, r.fn(), out));
  CHECK(r.asked == std::vector<std::string>{"other"});
  CHECK(out == in);
}

TEST_CASE("Non-statement messages are copied byte for byte") {
  ByteVector in;
  build_query(in, "prepare s1 as select 1; execute s1");
  build_execute(in, "", 0);
  build_flush(in);
  build_sync(in);
  build_terminate(in);
  // CopyData whose payload looks like a Parse, FunctionCall and an unknown tag: opaque to the rewriter.
  for (char tag : {'d', 'F', 'z'}) {
    in.push_back(std::byte(tag));
    const ByteVector payload = bytes_of("s1\0select 1\0\0\0"sv);
    const uint32_t len = uint32_t(payload.size() + 4);
    for (int s = 24; s >= 0; s -= 8) in.push_back(std::byte(len >> s));
    in.insert(in.end(), payload.begin(), payload.end());
  }
  Renamer r;
  r.names["s1"] = "pgmux_s_1";
  ByteVector out;
  REQUIRE(rewrite_statement_names(in, r.fn(), out));
  CHECK(r.asked.empty());
  CHECK(out == in);
}

TEST_CASE("Output is appended; an empty batch appends nothing") {
  ByteVector in;
  build_describe(in, 'S', "s1");
  Renamer r;
  r.names["s1"] = "n1";
  ByteVector out = bytes_of("prefix");
  REQUIRE(rewrite_statement_names(in, r.fn(), out));
  ByteVector expected = bytes_of("prefix");
  build_describe(expected, 'S', "n1");
  CHECK(out == expected);

  REQUIRE(rewrite_statement_names(ByteView{}, r.fn(), out));
  CHECK(out == expected);
}

TEST_CASE("No allocation beyond out's growth: a reserved out is not reallocated") {
  const ByteVector in = full_request("s1");
  Renamer r;
  r.names["s1"] = "pgmux_s_123";
  ByteVector out;
  out.reserve(4096);
  const std::byte* data = out.data();
  REQUIRE(rewrite_statement_names(in, r.fn(), out));
  CHECK(out.data() == data);
}

namespace {
ByteVector raw_message(char tag, std::string_view body) {
  ByteVector m{std::byte(tag)};
  const uint32_t len = uint32_t(body.size() + 4);
  for (int s = 24; s >= 0; s -= 8) m.push_back(std::byte(len >> s));
  const ByteVector b = bytes_of(body);
  m.insert(m.end(), b.begin(), b.end());
  return m;
}
}  // namespace

TEST_CASE("Batches that do not frame are rejected without writing and without calling rename") {
  ByteVector good;
  build_parse(good, "s1", "select 1");
  std::vector<std::pair<const char*, ByteVector>> bad;
  bad.emplace_back("truncated header", ByteVector(good.begin(), good.begin() + 3));
  bad.emplace_back("truncated body", ByteVector(good.begin(), good.end() - 1));
  bad.emplace_back("length below 4", bytes_of("S\0\0\0\3"sv));
  bad.emplace_back("length past the batch", bytes_of("S\0\0\0\5"sv));
  bad.emplace_back("zero tag", raw_message('\0', ""));

  for (auto& [what, tail] : bad) {
    const auto& case_name = what;  // CAPTURE takes it in a lambda, which clang 14 cannot do with a binding
    CAPTURE(case_name);
    ByteVector in = good;  // a good message first: nothing of it may be written either
    in.insert(in.end(), tail.begin(), tail.end());
    Renamer r;
    r.names["s1"] = "pgmux_s_1";
    ByteVector out = bytes_of("keep");
    CHECK_FALSE(rewrite_statement_names(in, r.fn(), out));
    CHECK(out == bytes_of("keep"));  // the good message's rewrite, made before the bad one, taken back
    CHECK(r.asked.size() <= 1);       // only the good message's name can have been asked for
  }
}

// PostgreSQL answers them ERROR 08P01 before it looks a name up: the server must see the client's bytes.
TEST_CASE("Statement messages PostgreSQL cannot read are copied as they are, their names not asked for") {
  std::vector<std::pair<const char*, ByteVector>> unreadable;
  unreadable.emplace_back("Parse without NUL", raw_message('P', "s1"));
  unreadable.emplace_back("Parse empty body", raw_message('P', ""));
  unreadable.emplace_back("Parse types cut short", raw_message('P', "s1\0select 1\0\0\1\0\0"sv));
  unreadable.emplace_back("Parse bytes after the types", raw_message('P', "s1\0select 1\0\0\0x"sv));
  unreadable.emplace_back("Bind without portal NUL", raw_message('B', "p1"));
  unreadable.emplace_back("Bind without statement NUL", raw_message('B', "p1\0s1"sv));
  unreadable.emplace_back("Describe empty", raw_message('D', ""));
  unreadable.emplace_back("Describe bad kind", raw_message('D', "Xs1\0"sv));
  unreadable.emplace_back("Describe no NUL", raw_message('D', "Ss1"));
  unreadable.emplace_back("Describe trailing bytes", raw_message('D', "Ss1\0x"sv));
  unreadable.emplace_back("Close bad kind", raw_message('C', "xs1\0"sv));
  unreadable.emplace_back("Close trailing bytes", raw_message('C', "Ss1\0\0"sv));

  for (auto& [what, middle] : unreadable) {
    const auto& case_name = what;
    CAPTURE(case_name);
    ByteVector in;
    build_parse(in, "s1", "select 1");
    in.insert(in.end(), middle.begin(), middle.end());
    build_bind(in, "", "s1", {});
    Renamer r;
    r.names["s1"] = "pgmux_s_1";
    ByteVector out;
    REQUIRE(rewrite_statement_names(in, r.fn(), out));
    CHECK(r.asked == std::vector<std::string>{"s1", "s1"});  // the good Parse's and Bind's only
    ByteVector want;
    build_parse(want, "pgmux_s_1", "select 1");
    want.insert(want.end(), middle.begin(), middle.end());
    build_bind(want, "", "pgmux_s_1", {});
    CHECK(out == want);
  }
}

TEST_CASE("A bad rename result (empty or containing NUL) fails and restores out") {
  for (std::string bad : {std::string(), std::string("a\0b", 3)}) {
    ByteVector in;
    build_parse(in, "ok", "select 1");
    build_parse(in, "bad", "select 2");
    Renamer r;
    r.names["ok"] = "pgmux_s_1";
    r.names["bad"] = bad;
    ByteVector out = bytes_of("keep");
    CHECK_FALSE(rewrite_statement_names(in, r.fn(), out));
    CHECK(out == bytes_of("keep"));
  }
}

TEST_CASE("Random and mutated batches never crash; accepted output frames into the same messages") {
  std::mt19937 rng(5151);
  std::vector<ByteVector> seeds = {full_request("s1"), full_request(""), full_request("s2")};
  {
    ByteVector mixed;
    build_query(mixed, "select 1");
    build_bind(mixed, "", "s1", {std::nullopt});
    build_close(mixed, 'S', "s2");
    seeds.push_back(mixed);
  }
  Renamer r;
  r.names["s1"] = "pgmux_s_1";
  r.names["s2"] = std::string(70, 'q');
  const StatementRenamer identity = [](std::string_view s) -> std::optional<std::string_view> { return s; };

  for (int i = 0; i < 20000; ++i) {
    ByteVector buf;
    if (rng() % 4 == 0) {
      const size_t n = rng() % 64;
      // Mostly tag letters, name bytes and NULs, so some random buffers get past the first checks.
      for (size_t k = 0; k < n; ++k) {
        buf.push_back(std::byte(rng() % 4 ? "PBDCSs1\0"[rng() % 8] : char(rng())));
      }
    } else {
      buf = seeds[rng() % seeds.size()];
      const int edits = 1 + int(rng() % 3);
      for (int e = 0; e < edits && !buf.empty(); ++e) {
        const size_t at = rng() % buf.size();
        switch (rng() % 4) {
          case 0: buf[at] = std::byte(rng()); break;
          case 1: buf.resize(at); break;
          case 2: buf.insert(buf.begin() + std::ptrdiff_t(at), std::byte(rng())); break;
          default: buf[at] = std::byte{0}; break;
        }
      }
    }
    // Exact-size heap copy so a sanitizer build catches any over-read.
    const ByteVector exact(buf.begin(), buf.end());
    ByteVector out = bytes_of("x");
    r.asked.clear();
    if (rewrite_statement_names(exact, r.fn(), out)) {
      const auto before = reframe(exact);
      const auto after = reframe(ByteView(out).subspan(1));
      REQUIRE(after.size() == before.size());
      for (size_t k = 0; k < after.size(); ++k) CHECK(after[k].tag == before[k].tag);
      ByteVector same;
      REQUIRE(rewrite_statement_names(exact, identity, same));
      CHECK(same == exact);
    } else {
      CHECK(out == bytes_of("x"));  // whatever was rewritten before the bad message is taken back
    }
  }
}
