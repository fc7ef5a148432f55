// The config loader on any text: JSON with comments, then validation of every section. A document it accepts
// comes with no errors, and one it refuses with at least one.
#include <cstdlib>

#include "conf/loader.hpp"
#include "tests/fuzz/fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto result = pgmux::conf::parse_config(pgmux::fuzz::as_text(data, size));
  if (result.ok() != result.errors.empty()) std::abort();
  for (const auto& error : result.errors) (void)error.to_string();
  return 0;
}
