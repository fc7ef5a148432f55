// SCRAM in the server role (a client logging in to pgmux): client-first and client-final from the input, with
// and without channel binding offered; and the stored-secret and base64 parsers the config feeds it.
// Input: "<client-first>\n--\n<client-final>". The nonce is fixed so corpus entries can carry a matching one.
#include <string>

#include "protocol/auth_scram.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::protocol;

namespace {

const ScramSecret& test_secret() {
  static const ScramSecret secret = make_scram_secret("app", "fuzz-salt-16byte", 4096);
  return secret;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = pgmux::fuzz::as_text(data, size);
  (void)parse_scram_secret(text);
  (void)base64_decode(text);

  const auto parts = pgmux::fuzz::split_parts(text);
  for (const bool with_binding : {false, true}) {
    ScramServer server(test_secret(), "fuzzservernonce");
    if (with_binding) server.set_channel_binding(std::string(32, '\x5a'));
    const bool plus = with_binding && !parts[0].empty() && parts[0][0] == 'p';
    if (!server.server_first(parts[0], plus)) continue;
    for (size_t i = 1; i < parts.size(); ++i) {  // more than one client-final: the later ones must be refused
      if (server.server_final(parts[i])) (void)server.recovered_client_key();
    }
  }
  return 0;
}
