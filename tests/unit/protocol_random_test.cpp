// Random and mutated input fed to every parser and both framers (fixed seed). Nothing may crash or read
// out of bounds: each buffer is an exact-size heap allocation, so an AddressSanitizer build
// (-DCMAKE_CXX_FLAGS=-fsanitize=address) flags any over-read. Returned views must lie inside the input.
#include <doctest/doctest.h>

#include <random>

#include "protocol/auth_md5.hpp"
#include "protocol/auth_scram.hpp"
#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/startup.hpp"

using namespace pgmux::protocol;

namespace {

constexpr int kIterations = 20000;

bool inside(std::string_view v, ByteView buf) {
  if (v.empty()) return true;
  auto* b = reinterpret_cast<const char*>(buf.data());
  return v.data() >= b && v.data() + v.size() <= b + buf.size();
}
bool inside(ByteView v, ByteView buf) { return v.empty() || inside(as_chars(v), buf); }

// Valid messages to mutate, so the parsers get past their first checks.
std::vector<ByteVector> seeds() {
  std::vector<ByteVector> s(20);
  build_query(s[0], "select 1");
  build_parse(s[1], "s1", "select $1", {23, 25});
  build_bind(s[2], "p", "s1", {std::string("1"), std::nullopt});
  build_describe(s[3], 'S', "s1");
  build_close(s[4], 'P', "p");
  build_execute(s[5], "p", 10);
  build_password_message(s[6], "md5abc");
  build_sasl_initial_response(s[7], "SCRAM-SHA-256", "n,,n=,r=abc");
  build_authentication_sasl(s[8], {"SCRAM-SHA-256"});
  build_authentication_md5(s[9], {});
  build_parameter_status(s[10], "a", "b");
  build_backend_key_data(s[11], 1, 2);
  build_ready_for_query(s[12], 'I');
  build_error_response(s[13], "ERROR", "42601", "syntax", "d", "h");
  build_startup_message(s[14], {{"user", "u"}, {"database", "d"}});
  build_cancel_request(s[15], 1, 2);
  build_ssl_request(s[16]);
  build_command_complete(s[17], "SELECT 1");
  build_data_row(s[18], {std::string("x")});
  build_row_description(s[19], {{"c", 25}});
  return s;
}

ByteVector random_buffer(std::mt19937& rng, const std::vector<ByteVector>& corpus) {
  std::uniform_int_distribution<int> byte(0, 255);
  ByteVector buf;
  if (rng() % 2 == 0) {
    const size_t n = rng() % 48;
    for (size_t i = 0; i < n; ++i) buf.push_back(std::byte(byte(rng)));
    return buf;
  }
  buf = corpus[rng() % corpus.size()];
  const int edits = 1 + int(rng() % 4);
  for (int e = 0; e < edits && !buf.empty(); ++e) {
    switch (rng() % 4) {
      case 0: buf[rng() % buf.size()] = std::byte(byte(rng)); break;
      case 1: buf.resize(rng() % buf.size()); break;
      case 2: buf.insert(buf.begin() + std::ptrdiff_t(rng() % (buf.size() + 1)), std::byte(byte(rng))); break;
      default: buf[rng() % buf.size()] = std::byte{0}; break;
    }
  }
  return buf;
}

// Feeds one buffer, both whole and without a 5-byte header, to every body decoder.
void decode_everything(ByteView buf) {
  for (ByteView body : {buf, buf.size() >= 5 ? buf.subspan(5) : ByteView{}}) {
    if (auto q = parse_query(body)) CHECK(inside(q->sql, body));
    if (auto p = parse_parse(body)) CHECK(inside(p->sql, body));
    if (auto b = parse_bind(body)) CHECK(inside(b->statement, body));
    if (auto d = parse_describe(body)) CHECK(inside(d->name, body));
    if (auto c = parse_close(body)) CHECK(inside(c->name, body));
    if (auto e = parse_execute(body)) CHECK(inside(e->portal, body));
    if (auto p = parse_password_message(body)) CHECK(inside(*p, body));
    if (auto s = parse_sasl_initial_response(body)) CHECK(inside(s->data, body));
    if (auto a = parse_authentication(body)) {
      CHECK(inside(a->payload, body));
      for (auto m : a->sasl_mechanisms) CHECK(inside(m, body));
    }
    if (auto p = parse_parameter_status(body)) CHECK(inside(p->value, body));
    (void)parse_backend_key_data(body);
    (void)parse_ready_for_query(body);
    if (auto c = parse_command_complete(body)) CHECK(inside(*c, body));
    (void)parse_error_fields(body);
  }
}

}  // namespace

TEST_CASE("Random buffers: framers, startup parser and every body decoder") {
  std::mt19937 rng(20240611);
  const auto corpus = seeds();
  for (int i = 0; i < kIterations; ++i) {
    const ByteVector buf = random_buffer(rng, corpus);
    ByteView view(buf);

    Frame f = next_frame(view);
    if (buf.size() < 5) CHECK(f.status == FrameStatus::NeedMore);
    if (f.status == FrameStatus::Frame) {
      CHECK(f.length >= 4);
      CHECK(f.length <= kDefaultMaxMessageSize);
    }
    Frame s = next_startup_frame(view);
    if (s.status == FrameStatus::Frame) {
      CHECK(s.total() <= buf.size());
      CHECK(s.length >= 8);
      // Only whole frames go to the startup parser, as the proxy does; and the raw buffer too.
      StartupPacket p = parse_startup_packet(view.first(s.total()));
      if (auto* m = std::get_if<StartupMessage>(&p)) CHECK((uint32_t(m->protocol_version) >> 16) == 3);
    }
    (void)parse_startup_packet(view);
    decode_everything(view);
  }
}

TEST_CASE("Random strings: SCRAM, base64, secrets, MD5 helpers") {
  std::mt19937 rng(7677);
  static constexpr std::string_view kAlphabet = "rscipnvexym=,biwsAZaz09+/=\x01 ";
  const ScramSecret secret = make_scram_secret("pw", "saltsalt", 16);
  const std::string client_nonce = "CLIENTNONCE";
  // A valid server-first for client_nonce with the secret's parameters, to mutate.
  const std::string good_first = "r=" + client_nonce + "SRV,s=" + base64_encode(secret.salt) + ",i=16";
  Sha256 client_key{};
  {
    ScramClient c("pw", client_nonce);
    ScramServer srv(secret, "SRV");
    auto sf = srv.server_first(c.client_first());
    auto cf = c.client_final(*sf);
    REQUIRE(srv.server_final(*cf));
    client_key = *srv.recovered_client_key();
  }

  auto random_string = [&](std::string base) {
    if (base.empty() || rng() % 3 == 0) {
      base.clear();
      const size_t n = rng() % 40;
      for (size_t i = 0; i < n; ++i) {
        base += rng() % 4 == 0 ? char(rng() % 256) : kAlphabet[rng() % kAlphabet.size()];
      }
      return base;
    }
    const int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits && !base.empty(); ++e) {
      const size_t at = rng() % base.size();
      switch (rng() % 3) {
        case 0: base[at] = kAlphabet[rng() % kAlphabet.size()]; break;
        case 1: base.erase(at, 1 + rng() % 4); break;
        default: base.insert(at, 1, kAlphabet[rng() % kAlphabet.size()]); break;
      }
    }
    return base;
  };

  for (int i = 0; i < kIterations; ++i) {
    // Server role: mutated client-first, then mutated client-final.
    ScramServer server(secret, "SRV");
    auto first = server.server_first(random_string("n,,n=," + std::string("r=") + client_nonce));
    if (first) {
      auto final = server.server_final(random_string("c=biws,r=" + client_nonce + "SRV,p=" + std::string(44, 'A')));
      CHECK(final.has_value() != !server.error().empty());
    } else {
      CHECK_FALSE(server.error().empty());
    }

    // Client role from keys (no PBKDF2, so hostile iteration counts cost nothing).
    ScramClient keyed(client_key, secret, client_nonce);
    keyed.client_first();
    if (keyed.client_final(random_string(good_first))) {
      (void)keyed.verify_server_final(random_string("v=" + std::string(44, 'A')));
    } else {
      CHECK_FALSE(keyed.error().empty());
    }

    // Client role from a password: random server-first never carries our nonce, so it fails early.
    ScramClient pw("pw", client_nonce);
    pw.client_first();
    (void)pw.client_final(random_string({}));

    const std::string text = random_string(format_scram_secret(secret));
    if (auto s = parse_scram_secret(text)) CHECK(s->iterations > 0);
    if (auto d = base64_decode(text)) CHECK(base64_encode(*d) == text);
    (void)is_md5_stored_hash(text);
    (void)md5_response_from_stored(text, {});
  }
}
