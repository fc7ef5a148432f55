// The "tls" section: defaults, every mode, and diagnostics that name the setting.
#include <doctest/doctest.h>

#include <string>

#include "conf/loader.hpp"

using namespace pgmux::conf;

namespace {

LoadResult with_tls(const std::string& tls) {
  return parse_config(R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}], "tls": )" + tls + "}");
}

std::string all_errors(const LoadResult& r) {
  std::string out;
  for (const Diagnostic& d : r.errors) out += d.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("conf tls: off by default, TLS 1.2 floor") {
  const LoadResult r = parse_config(R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}]})");
  REQUIRE(r.ok());
  CHECK(r.config->tls.client.mode == TlsMode::Disable);
  CHECK_FALSE(r.config->tls.client.enabled());
  CHECK(r.config->tls.client.min_protocol == "TLSv1.2");
}

TEST_CASE("conf tls: every mode with its files") {
  for (const char* mode : {"allow", "prefer", "require", "verify-ca", "verify-full"}) {
    CAPTURE(mode);
    const LoadResult r = with_tls(std::string(R"({"client": {"mode": ")") + mode +
                                  R"(", "cert_file": "s.crt", "key_file": "s.key", "ca_file": "ca.crt",
                                       "min_protocol": "TLSv1.3", "ciphers": "HIGH"}})");
    INFO(all_errors(r));
    REQUIRE(r.ok());
    const TlsClient& t = r.config->tls.client;
    CHECK(to_string(t.mode) == std::string(mode));
    CHECK(t.cert_file == "s.crt");
    CHECK(t.key_file == "s.key");
    CHECK(t.ca_file == "ca.crt");
    CHECK(t.min_protocol == "TLSv1.3");
    CHECK(t.ciphers == "HIGH");
  }
  const LoadResult require = with_tls(R"({"client": {"mode": "require", "cert_file": "s.crt", "key_file": "s.key"}})");
  CHECK(require.config->tls.client.requires_tls());
  const LoadResult prefer = with_tls(R"({"client": {"mode": "prefer", "cert_file": "s", "key_file": "k"}})");
  CHECK_FALSE(prefer.config->tls.client.requires_tls());
}

TEST_CASE("conf tls: diagnostics name the setting") {
  CHECK(all_errors(with_tls(R"({"client": {"mode": "require"}})")) ==
        "/tls/client/cert_file: is required when mode is \"require\"\n"
        "/tls/client/key_file: is required when mode is \"require\"\n");
  CHECK(all_errors(with_tls(R"({"client": {"mode": "verify-full", "cert_file": "s", "key_file": "k"}})")) ==
        "/tls/client/ca_file: is required when mode is \"verify-full\" (client certificates are checked against it)\n");
  CHECK(all_errors(with_tls(R"({"client": {"mode": "always"}})")) ==
        "/tls/client/mode: must be one of \"disable\", \"allow\", \"prefer\", \"require\", \"verify-ca\", "
        "\"verify-full\"\n");
  CHECK(all_errors(with_tls(R"({"client": {"min_protocol": "TLSv1.1"}})")) ==
        "/tls/client/min_protocol: must be one of \"TLSv1.2\", \"TLSv1.3\"\n");
  CHECK(all_errors(with_tls(R"({"client": {"sslmode": "require"}})")) == "/tls/client/sslmode: unknown key\n");
  CHECK(all_errors(with_tls(R"({"server": {}})")) == "/tls/server: unknown key\n");
  CHECK(all_errors(with_tls(R"("on")")) == "/tls: must be an object\n");
}

namespace {
LoadResult with_backend(const std::string& fields) {
  return parse_config(R"({"backends": [{"host": "db1")" + fields + R"(}], "databases": [{"name": "app"}]})");
}
}  // namespace

TEST_CASE("conf tls: a backend's sslmode and files, with libpq's names") {
  const LoadResult plain = with_backend("");
  REQUIRE(plain.ok());
  CHECK(plain.config->backends[0].sslmode == TlsMode::Disable);
  const LoadResult full = with_backend(R"(, "sslmode": "verify-full", "sslrootcert": "ca.crt", "sslcert": "c.crt",
                                         "sslkey": "c.key")");
  INFO(all_errors(full));
  REQUIRE(full.ok());
  const Backend& b = full.config->backends[0];
  CHECK(b.sslmode == TlsMode::VerifyFull);
  CHECK(b.sslrootcert == "ca.crt");
  CHECK(b.sslcert == "c.crt");
  CHECK(b.sslkey == "c.key");
  CHECK(with_backend(R"(, "sslmode": "prefer")").ok());
  CHECK(with_backend(R"(, "sslmode": "require")").ok());
}

TEST_CASE("conf tls: a backend's TLS diagnostics name the setting") {
  CHECK(all_errors(with_backend(R"(, "sslmode": "verify-ca")")) ==
        "/backends/0/sslrootcert: is required when sslmode is \"verify-ca\" (the server's certificate is checked "
        "against it)\n");
  CHECK(all_errors(with_backend(R"(, "sslmode": "allow")")) ==
        "/backends/0/sslmode: must be one of \"disable\", \"prefer\", \"require\", \"verify-ca\", \"verify-full\"\n");
  CHECK(all_errors(with_backend(R"(, "sslmode": "require", "sslcert": "c.crt")")) ==
        "/backends/0/sslkey: is required with sslcert (a client certificate and its key go together)\n");
}
