// The read/write classifier on any text: the lexical fast path, the libpg_query path it falls back to, the
// statement cache (each text is classified twice: the second answer comes from the cache and must agree) and
// the parser's statement splitter.
#include <cstdlib>

#include "routing/classifier.hpp"
#include "routing/parse_classifier.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::routing;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Classifier classifier({"audit_write"}, 64);
  const std::string_view sql = pgmux::fuzz::as_text(data, size);
  const Classification first = classifier.classify(sql);
  const Classification again = classifier.classify(sql);
  if (first.kind != again.kind || first.pins_primary() != again.pins_primary()) std::abort();
  (void)parse_statements(sql, classifier);
  return 0;
}
