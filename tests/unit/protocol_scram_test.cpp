// SCRAM-SHA-256: RFC 7677 vector, secrets, client <-> server exchanges and rejections.
#include <doctest/doctest.h>

#include "protocol/auth_scram.hpp"

using namespace pgmux::protocol;

namespace {
constexpr const char* kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr const char* kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr const char* kSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";
// The RFC 7677 section 3 exchange.
constexpr const char* kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr const char* kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr const char* kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// The secret PostgreSQL would store for "pencil" with that salt (computed with Python's hashlib).
constexpr const char* kPencilSecret =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
constexpr const char* kPencilClientKey = "pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos=";

ScramSecret pencil_secret() { return make_scram_secret("pencil", *base64_decode(kSalt), 4096); }

std::string key_b64(const Sha256& k) { return base64_encode({reinterpret_cast<const char*>(k.data()), k.size()}); }

// Runs a full exchange; returns the server's recovered client key (nullopt on any failure).
std::optional<Sha256> exchange(ScramClient& client, ScramServer& server) {
  auto first = server.server_first(client.client_first());
  if (!first) return std::nullopt;
  auto final = client.client_final(*first);
  if (!final) return std::nullopt;
  auto server_final = server.server_final(*final);
  if (!server_final) return std::nullopt;
  if (!client.verify_server_final(*server_final)) return std::nullopt;
  return server.recovered_client_key();
}
}  // namespace

TEST_CASE("base64 encode/decode") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode("n,,") == "biws");
  CHECK(base64_decode("Zm9vYg==") == "foob");
  CHECK(base64_decode("Zm9vYmE=") == "fooba");
  CHECK(base64_decode("") == "");
  CHECK_FALSE(base64_decode("Zm9"));
  CHECK_FALSE(base64_decode("Zm9*"));
  CHECK_FALSE(base64_decode("Z==="));
  CHECK_FALSE(base64_decode("Zg==Zg=="));  // padding in the middle
  CHECK_FALSE(base64_decode("=Zg="));
  CHECK_FALSE(base64_decode("Zh=="));  // non-zero bits under the padding
  CHECK_FALSE(base64_decode("Zm9="));
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  CHECK(base64_decode(base64_encode(all)) == all);
}

TEST_CASE("random_nonce: 18 bytes base64, different each time") {
  std::string a = random_nonce(), b = random_nonce();
  CHECK(a.size() == 24);
  CHECK(a != b);
  CHECK(base64_decode(a)->size() == 18);
}

TEST_CASE("RFC 7677 test vector: client side") {
  ScramClient client("pencil", kClientNonce);
  client.set_username("user");
  CHECK(client.client_first() == kRfcClientFirst);
  auto final = client.client_final(kRfcServerFirst);
  REQUIRE(final);
  CHECK(*final == kRfcClientFinal);
  CHECK(client.verify_server_final(kRfcServerFinal));
  CHECK(client.error().empty());
}

TEST_CASE("RFC 7677 test vector: server side, and the recovered client key") {
  ScramServer server(pencil_secret(), kServerNonce);
  auto first = server.server_first(kRfcClientFirst);
  REQUIRE(first);
  CHECK(*first == kRfcServerFirst);
  auto final = server.server_final(kRfcClientFinal);
  REQUIRE(final);
  CHECK(*final == kRfcServerFinal);
  REQUIRE(server.recovered_client_key());
  CHECK(key_b64(*server.recovered_client_key()) == kPencilClientKey);
  // A pool takes the key only for the secret it belongs to (not one a reload or a newer lookup put there since).
  CHECK(client_key_matches(*server.recovered_client_key(), pencil_secret()));
  CHECK_FALSE(client_key_matches(*server.recovered_client_key(), make_scram_secret("pen", *base64_decode(kSalt))));
}

TEST_CASE("RFC 7677 test vector: client from recovered keys") {
  ScramSecret secret = pencil_secret();
  Sha256 client_key{};
  auto raw = *base64_decode(kPencilClientKey);
  for (size_t i = 0; i < client_key.size(); ++i) client_key[i] = static_cast<unsigned char>(raw[i]);
  ScramClient client(client_key, secret, kClientNonce);
  client.set_username("user");
  CHECK(client.client_first() == kRfcClientFirst);
  auto final = client.client_final(kRfcServerFirst);
  REQUIRE(final);
  CHECK(*final == kRfcClientFinal);
  CHECK(client.verify_server_final(kRfcServerFinal));
}

TEST_CASE("Secrets: make, format, parse") {
  ScramSecret s = pencil_secret();
  CHECK(format_scram_secret(s) == kPencilSecret);
  auto parsed = parse_scram_secret(kPencilSecret);
  REQUIRE(parsed);
  CHECK(parsed->iterations == 4096);
  CHECK(parsed->salt == s.salt);
  CHECK(parsed->stored_key == s.stored_key);
  CHECK(parsed->server_key == s.server_key);
  CHECK(is_scram_secret(kPencilSecret));

  ScramSecret other = make_scram_secret("x", "0123456789abcdef", 1000);
  CHECK(parse_scram_secret(format_scram_secret(other))->iterations == 1000);

  CHECK_FALSE(is_scram_secret("md5fe63fea7be31b0200b496d08bc6b517d"));
  CHECK_FALSE(is_scram_secret("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="));
  CHECK_FALSE(is_scram_secret("SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
                              ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="));
  CHECK_FALSE(is_scram_secret("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q=="
                              ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="));  // 31-byte key
  CHECK_FALSE(is_scram_secret("SCRAM-SHA-256$4096:!!!!$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
                              ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="));
  CHECK_FALSE(is_scram_secret(""));
}

TEST_CASE("A secret generated by PostgreSQL 15 (ALTER ROLE ... PASSWORD 'pencil')") {
  const std::string pg =
      "SCRAM-SHA-256$4096:y/zPYZMsPpswXo7iyefFug==$1kj/frx+PmfBknhSFelBUdKFDQKEdLbrVYjTpSz8480="
      ":+r0I1OTJEhznatf7l6mLtoPhZm0KoFfCQJB/rcbjnMw=";
  auto parsed = parse_scram_secret(pg);
  REQUIRE(parsed);
  CHECK(format_scram_secret(*parsed) == pg);
  CHECK(format_scram_secret(make_scram_secret("pencil", parsed->salt, parsed->iterations)) == pg);
  // And a client with that password logs in to a server holding it.
  ScramClient client("pencil");
  ScramServer server(*parsed);
  CHECK(exchange(client, server));
}

TEST_CASE("Full exchange with random nonces: password client and recovered-key client") {
  ScramSecret secret = make_scram_secret("s3cret pass", "saltsaltsaltsalt", 4096);
  ScramClient client("s3cret pass");
  ScramServer server(secret);
  auto key = exchange(client, server);
  REQUIRE(key);
  CHECK(client.error().empty());
  CHECK(server.error().empty());

  // pgmux reuses the recovered key to log in to a server holding the same secret.
  ScramClient again(*key, secret);
  ScramServer backend(secret);
  auto key2 = exchange(again, backend);
  REQUIRE(key2);
  CHECK(*key2 == *key);
}

TEST_CASE("Wrong password is rejected by the server") {
  ScramSecret secret = make_scram_secret("right", "somesalt", 4096);
  ScramClient client("wrong");
  ScramServer server(secret);
  auto first = server.server_first(client.client_first());
  REQUIRE(first);
  auto final = client.client_final(*first);
  REQUIRE(final);  // the client cannot know yet
  CHECK_FALSE(server.server_final(*final));
  CHECK_FALSE(server.error().empty());
  CHECK_FALSE(server.recovered_client_key());
}

TEST_CASE("Client rejects a forged server signature") {
  ScramSecret secret = make_scram_secret("pw", "somesalt", 4096);
  ScramSecret impostor = make_scram_secret("pw", "somesalt", 4096);
  impostor.server_key[0] ^= 1;  // a server that only knows StoredKey cannot sign
  ScramClient client("pw");
  ScramServer server(impostor);
  auto first = server.server_first(client.client_first());
  auto final = client.client_final(*first);
  REQUIRE(final);
  auto server_final = server.server_final(*final);
  REQUIRE(server_final);  // StoredKey is right, so the proof checks out
  CHECK_FALSE(client.verify_server_final(*server_final));
  CHECK(client.error().find("signature") != std::string::npos);
}

TEST_CASE("Client: server error, malformed server-final, call order") {
  ScramClient early("pw", "abc");
  CHECK_FALSE(early.verify_server_final("v=xxxx"));
  CHECK_FALSE(early.error().empty());

  ScramClient c1("pencil", kClientNonce);
  c1.client_first();
  REQUIRE(c1.client_final(kRfcServerFirst));
  CHECK_FALSE(c1.verify_server_final("e=invalid-proof"));
  CHECK(c1.error().find("invalid-proof") != std::string::npos);

  ScramClient c2("pencil", kClientNonce);
  c2.client_first();
  REQUIRE(c2.client_final(kRfcServerFirst));
  CHECK_FALSE(c2.verify_server_final("v=notbase64!"));

  ScramClient c3("pencil", kClientNonce);
  CHECK_FALSE(c3.client_final(kRfcServerFirst));  // before client_first
}

TEST_CASE("Client rejects malformed or hostile server-first messages") {
  const char* bad[] = {
      "",
      "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",     // nonce not extended
      "r=XXprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // wrong prefix
      "r=rOprNGfwEbeRWgbNEkqOabc,s=,i=4096",                          // empty salt
      "r=rOprNGfwEbeRWgbNEkqOabc,s=***,i=4096",                       // bad salt
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=12x",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==",
      "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOabc,i=4096",
      "m=ext,r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
  };
  for (const char* msg : bad) {
    CAPTURE(msg);
    ScramClient client("pencil", kClientNonce);
    client.client_first();
    CHECK_FALSE(client.client_final(msg));
    CHECK_FALSE(client.error().empty());
  }
}

TEST_CASE("Recovered-key client fails clearly when salt or iterations differ") {
  ScramSecret secret = pencil_secret();
  ScramClient first("pencil", kClientNonce);
  ScramServer server(secret, kServerNonce);
  auto key = exchange(first, server);
  REQUIRE(key);

  ScramSecret resalted = make_scram_secret("pencil", "another salt", 4096);
  ScramClient client(*key, secret);
  ScramServer other(resalted);
  auto sf = other.server_first(client.client_first());
  REQUIRE(sf);
  CHECK_FALSE(client.client_final(*sf));
  CHECK(client.error().find("salt") != std::string::npos);

  ScramSecret more_iterations = make_scram_secret("pencil", secret.salt, 4097);
  ScramClient client2(*key, secret);
  ScramServer other2(more_iterations);
  auto sf2 = other2.server_first(client2.client_first());
  REQUIRE(sf2);
  CHECK_FALSE(client2.client_final(*sf2));
  CHECK_FALSE(client2.error().empty());

  // A key that does not belong to the secret is refused up front.
  Sha256 wrong = *key;
  wrong[0] ^= 1;
  ScramClient client3(wrong, secret);
  client3.client_first();
  CHECK_FALSE(client3.client_final(kRfcServerFirst));
  CHECK_FALSE(client3.error().empty());
}

TEST_CASE("Server answers with the secret's salt and iterations") {
  ScramSecret secret = make_scram_secret("pw", "0123456789ab", 12345);
  ScramServer server(secret, "SRVNONCE");
  auto first = server.server_first("n,,n=,r=CLIENTNONCE");
  REQUIRE(first);
  CHECK(*first == "r=CLIENTNONCESRVNONCE,s=" + base64_encode("0123456789ab") + ",i=12345");
}

TEST_CASE("Server rejects malformed client-first messages") {
  const char* bad[] = {
      "",
      "p=tls-server-end-point,,n=,r=abc",  // channel binding requested
      "x,,n=,r=abc",
      "n,a=admin,n=,r=abc",                // authzid
      "n,n=,r=abc",
      "n,,r=abc",                          // missing n=
      "n,,n=,r=",                          // empty nonce
      "n,,n=,r=a\001b",                    // unprintable nonce
      "n,,n=",
      "n,,m=ext,n=,r=abc",
      "n",
      "n,",
  };
  for (const char* msg : bad) {
    CAPTURE(msg);
    ScramServer server(pencil_secret(), kServerNonce);
    CHECK_FALSE(server.server_first(msg));
    CHECK_FALSE(server.error().empty());
    CHECK_FALSE(server.server_final(kRfcClientFinal));  // no second step after a failure
  }
  // "y" (client supports channel binding, thinks we do not) is fine, as is a trailing extension.
  ScramServer y(pencil_secret(), kServerNonce);
  CHECK(y.server_first("y,,n=,r=abc"));
  ScramServer ext(pencil_secret(), kServerNonce);
  CHECK(ext.server_first("n,,n=user,r=abc,x=ext"));
}

TEST_CASE("Server rejects malformed client-final messages") {
  const std::string nonce = std::string(kClientNonce) + kServerNonce;
  const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  const std::string bad[] = {
      "",
      "c=biws,r=" + nonce,                                                 // no proof
      "c=biws,r=rOprNGfwEbeRWgbNEkqOXXX," + proof,                        // wrong nonce
      "c=biws,r=XXprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," + proof,  // wrong prefix
      "c=biws,r=" + std::string(kClientNonce) + "," + proof,              // client nonce only
      "c=eSws,r=" + nonce + "," + proof,                                  // binding header mismatch
      "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" + nonce + "," + proof,      // p=... binding data
      "c=!!!!,r=" + nonce + "," + proof,
      "r=" + nonce + ",c=biws," + proof,                                   // wrong order
      "c=biws,r=" + nonce + ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",  // bad proof
      "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",  // non-canonical base64
      "c=biws,r=" + nonce + ",p=AAAA",                                    // short proof
      "c=biws,r=" + nonce + "," + proof + ",x=after",                     // proof not last
      "c=biws,r=" + nonce + "," + proof + ",",
      "c=biws,r=" + nonce + ",p=",
  };
  for (const auto& msg : bad) {
    CAPTURE(msg);
    ScramServer server(pencil_secret(), kServerNonce);
    REQUIRE(server.server_first(kRfcClientFirst));
    CHECK_FALSE(server.server_final(msg));
    CHECK_FALSE(server.error().empty());
    CHECK_FALSE(server.recovered_client_key());
  }
  // Out of order.
  ScramServer early(pencil_secret(), kServerNonce);
  CHECK_FALSE(early.server_final(kRfcClientFinal));
  CHECK_FALSE(early.error().empty());
  ScramServer twice(pencil_secret(), kServerNonce);
  REQUIRE(twice.server_first(kRfcClientFirst));
  CHECK_FALSE(twice.server_first(kRfcClientFirst));
}

TEST_CASE("mock secret: the same salt for the same user and key, no password verifies") {
  const ScramSecret a = mock_scram_secret("nobody", "key one");
  const ScramSecret again = mock_scram_secret("nobody", "key one");
  CHECK(a.salt.size() == 16);
  CHECK(a.iterations == 4096);
  CHECK(a.salt == again.salt);
  CHECK(a.salt != mock_scram_secret("somebody", "key one").salt);
  CHECK(a.salt != mock_scram_secret("nobody", "key two").salt);
  CHECK(a.stored_key != again.stored_key);  // random: nothing derived from the name can log in

  // A full exchange against it runs to the end and fails on the proof.
  ScramServer server(a);
  ScramClient client("any password");
  auto server_first = server.server_first(client.client_first());
  REQUIRE(server_first);
  auto client_final = client.client_final(*server_first);
  REQUIRE(client_final);
  CHECK_FALSE(server.server_final(*client_final));
}
