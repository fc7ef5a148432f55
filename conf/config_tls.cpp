// The "tls" section: tls.client (what pgmux offers to clients). Only shapes and combinations are checked here;
// whether the files hold a usable certificate and key is learnt when the proxy builds its TLS context, at
// startup and at each reload, and reported with the same JSON pointers.
#include "conf/config_json.hpp"

namespace pgmux::conf::detail {
namespace {

constexpr std::string_view kTlsModes =
    "\"disable\", \"allow\", \"prefer\", \"require\", \"verify-ca\", \"verify-full\"";

void require_file(ObjectReader& r, std::string_view key, const std::string& value, const char* why) {
  if (value.empty()) r.diags().add_unless_covered(r.pointer_of(key), std::string("is required ") + why);
}

TlsClient parse_tls_client(ObjectReader& parent) {
  TlsClient out;
  const Json* value = parent.get("client");
  if (value == nullptr) return out;
  ObjectReader r(*value, parent.pointer_of("client"), parent.diags());
  if (!r.valid()) return out;
  if (auto mode = r.enumeration("mode", parse_tls_mode, kTlsModes)) out.mode = *mode;
  if (auto text = r.string("cert_file")) out.cert_file = *text;
  if (auto text = r.string("key_file")) out.key_file = *text;
  if (auto text = r.string("ca_file")) out.ca_file = *text;
  if (auto text = r.string("min_protocol")) {
    if (*text == "TLSv1.2" || *text == "TLSv1.3") {
      out.min_protocol = *text;
    } else {
      r.diags().add(r.pointer_of("min_protocol"), "must be one of \"TLSv1.2\", \"TLSv1.3\"");
    }
  }
  if (auto text = r.string("ciphers")) out.ciphers = *text;
  if (out.enabled()) {
    const std::string why = std::string("when mode is \"") + to_string(out.mode) + "\"";
    require_file(r, "cert_file", out.cert_file, why.c_str());
    require_file(r, "key_file", out.key_file, why.c_str());
  }
  if (out.wants_client_cert()) {
    const std::string why =
        std::string("when mode is \"") + to_string(out.mode) + "\" (client certificates are checked against it)";
    require_file(r, "ca_file", out.ca_file, why.c_str());
  }
  r.finish();
  return out;
}

}  // namespace

Tls parse_tls(ObjectReader& root) {
  Tls out;
  const Json* value = root.get("tls");
  if (value == nullptr) return out;
  ObjectReader r(*value, root.pointer_of("tls"), root.diags());
  if (!r.valid()) return out;
  out.client = parse_tls_client(r);
  r.finish();
  return out;
}

}  // namespace pgmux::conf::detail
