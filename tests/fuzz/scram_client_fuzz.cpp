// SCRAM in the client role (pgmux logging in to a server): server-first and server-final from the input, for a
// client holding a password and for one holding keys recovered from another exchange.
// Input: "<server-first>\n--\n<server-final>". The client nonce is fixed so corpus entries can extend it.
#include <charconv>
#include <string>

#include "protocol/auth_scram.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::protocol;

namespace {

// The server chooses the PBKDF2 iteration count and pgmux, like libpq, does as many as it is told: a test
// input asking for millions only measures PBKDF2, so the fuzzer skips those.
bool cheap_iterations(std::string_view server_first) {
  const size_t at = server_first.find(",i=");
  if (at == std::string_view::npos) return true;
  const std::string_view digits = server_first.substr(at + 3);
  long count = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
  return error != std::errc() || count <= 10000;
}

void exchange(ScramClient& client, const std::vector<std::string_view>& parts) {
  (void)client.client_first();
  if (!client.client_final(parts[0])) return;
  for (size_t i = 1; i < parts.size(); ++i) (void)client.verify_server_final(parts[i]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = pgmux::fuzz::split_parts(pgmux::fuzz::as_text(data, size));
  if (!cheap_iterations(parts[0])) return 0;

  ScramClient with_password("app", "fuzzclientnonce");
  with_password.set_username(size % 2 ? "app" : "a,b=c");
  if (size % 3 == 0) with_password.set_channel_binding(std::string(32, '\x5a'));
  exchange(with_password, parts);

  static const ScramSecret secret = make_scram_secret("app", "fuzz-salt-16byte", 4096);
  Sha256 client_key{};
  client_key.fill(0x11);  // not the secret's key: the constructor refuses it and every step must fail cleanly
  ScramClient with_keys(client_key, secret, "fuzzclientnonce");
  exchange(with_keys, parts);
  return 0;
}
