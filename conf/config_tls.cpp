// The "tls" section: tls.client (what pgmux offers to clients), and each backend's sslmode and files. Only
// shapes and combinations are checked here; whether the files hold a usable certificate and key is learnt when
// the proxy builds its TLS contexts, at startup and at each reload, and reported with the same JSON pointers.
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

void parse_backend_tls(ObjectReader& r, Backend& b) {
  if (auto mode = r.string("sslmode")) {
    auto parsed = parse_tls_mode(*mode);
    if (parsed && *parsed != TlsMode::Allow) {
      b.sslmode = *parsed;
    } else {
      r.diags().add(r.pointer_of("sslmode"),
                    "must be one of \"disable\", \"prefer\", \"require\", \"verify-ca\", \"verify-full\"");
    }
  }
  if (auto text = r.string("sslrootcert")) b.sslrootcert = *text;
  if (auto text = r.string("sslcert")) b.sslcert = *text;
  if (auto text = r.string("sslkey")) b.sslkey = *text;
  if (b.sslmode >= TlsMode::VerifyCa) {
    require_file(r, "sslrootcert", b.sslrootcert,
                 (std::string("when sslmode is \"") + to_string(b.sslmode) + "\" (the server's certificate is checked "
                  "against it)").c_str());
  }
  if (b.sslcert.empty() != b.sslkey.empty()) {
    r.diags().add(r.pointer_of(b.sslcert.empty() ? "sslcert" : "sslkey"),
                  "is required with " + std::string(b.sslcert.empty() ? "sslkey" : "sslcert") +
                      " (a client certificate and its key go together)");
  }
}

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
