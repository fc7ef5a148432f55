#include "protocol/backend_messages.hpp"

#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"

namespace pgmux::protocol {

namespace {
bool done(const ByteReader& r) { return r.ok() && r.at_end(); }
}  // namespace

std::optional<AuthenticationRequest> parse_authentication(ByteView body) {
  ByteReader r(body);
  AuthenticationRequest a;
  a.code = AuthCode(r.i32());
  if (!r.ok()) return std::nullopt;
  a.payload = r.rest();
  switch (a.code) {
    case AuthCode::Ok:
    case AuthCode::CleartextPassword:
      if (!a.payload.empty()) return std::nullopt;
      break;
    case AuthCode::Md5Password:
      if (a.payload.size() != 4) return std::nullopt;
      break;
    case AuthCode::Sasl: {
      // Mechanism names, each NUL-terminated, then an empty name.
      ByteReader m(a.payload);
      while (true) {
        std::string_view name = m.cstring();
        if (!m.ok()) return std::nullopt;
        if (name.empty()) break;
        a.sasl_mechanisms.push_back(name);
      }
      if (!m.at_end() || a.sasl_mechanisms.empty()) return std::nullopt;
      break;
    }
    default:
      break;  // other codes (and unknown ones) carry opaque data; the caller decides
  }
  return a;
}

std::optional<ParameterStatus> parse_parameter_status(ByteView body) {
  ByteReader r(body);
  ParameterStatus p;
  p.name = r.cstring();
  p.value = r.cstring();
  if (!done(r)) return std::nullopt;
  return p;
}

std::optional<BackendKeyData> parse_backend_key_data(ByteView body) {
  ByteReader r(body);
  BackendKeyData k;
  k.process_id = r.i32();
  k.secret_key = r.i32();
  if (!done(r)) return std::nullopt;
  return k;
}

std::optional<ReadyForQuery> parse_ready_for_query(ByteView body) {
  ByteReader r(body);
  ReadyForQuery z{char(r.u8())};
  if (!done(r) || (z.status != 'I' && z.status != 'T' && z.status != 'E')) return std::nullopt;
  return z;
}

std::optional<std::string_view> parse_command_complete(ByteView body) {
  ByteReader r(body);
  std::string_view tag = r.cstring();
  if (!done(r)) return std::nullopt;
  return tag;
}

namespace {
void auth_message(ByteVector& out, AuthCode code, ByteView payload) {
  ByteWriter w(out);
  w.begin_message(backend::kAuthentication);
  w.i32(int32_t(code));
  w.bytes(payload);
  w.end_message();
}
}  // namespace

void build_authentication_ok(ByteVector& out) { auth_message(out, AuthCode::Ok, {}); }

void build_authentication_cleartext(ByteVector& out) { auth_message(out, AuthCode::CleartextPassword, {}); }

void build_authentication_md5(ByteVector& out, const std::array<std::byte, 4>& salt) {
  auth_message(out, AuthCode::Md5Password, salt);
}

void build_authentication_sasl(ByteVector& out, const std::vector<std::string>& mechanisms) {
  ByteWriter w(out);
  w.begin_message(backend::kAuthentication);
  w.i32(int32_t(AuthCode::Sasl));
  for (const auto& m : mechanisms) w.cstring(m);
  w.u8(0);
  w.end_message();
}

void build_authentication_sasl_continue(ByteVector& out, std::string_view data) {
  auth_message(out, AuthCode::SaslContinue, as_bytes(data));
}

void build_authentication_sasl_final(ByteVector& out, std::string_view data) {
  auth_message(out, AuthCode::SaslFinal, as_bytes(data));
}

void build_parameter_status(ByteVector& out, std::string_view name, std::string_view value) {
  ByteWriter w(out);
  w.begin_message(backend::kParameterStatus);
  w.cstring(name);
  w.cstring(value);
  w.end_message();
}

void build_backend_key_data(ByteVector& out, int32_t process_id, int32_t secret_key) {
  ByteWriter w(out);
  w.begin_message(backend::kBackendKeyData);
  w.i32(process_id);
  w.i32(secret_key);
  w.end_message();
}

void build_negotiate_protocol_version(ByteVector& out, int32_t newest_version,
                                      const std::vector<std::string>& unrecognized_options) {
  ByteWriter w(out);
  w.begin_message(backend::kNegotiateProtocolVersion);
  w.i32(newest_version);
  w.i32(static_cast<int32_t>(unrecognized_options.size()));
  for (const std::string& option : unrecognized_options) w.cstring(option);
  w.end_message();
}

void build_ready_for_query(ByteVector& out, char status) {
  ByteWriter w(out);
  w.begin_message(backend::kReadyForQuery);
  w.u8(uint8_t(status));
  w.end_message();
}

void build_command_complete(ByteVector& out, std::string_view tag) {
  ByteWriter w(out);
  w.begin_message(backend::kCommandComplete);
  w.cstring(tag);
  w.end_message();
}

namespace {
void bodiless_message(ByteVector& out, char tag) {
  ByteWriter w(out);
  w.begin_message(tag);
  w.end_message();
}
}  // namespace

void build_empty_query_response(ByteVector& out) { bodiless_message(out, backend::kEmptyQueryResponse); }

void build_parse_complete(ByteVector& out) { bodiless_message(out, backend::kParseComplete); }
void build_bind_complete(ByteVector& out) { bodiless_message(out, backend::kBindComplete); }
void build_no_data(ByteVector& out) { bodiless_message(out, backend::kNoData); }

void build_row_description(ByteVector& out, const std::vector<ColumnSpec>& columns) {
  ByteWriter w(out);
  w.begin_message(backend::kRowDescription);
  w.i16(int16_t(columns.size()));
  for (const auto& c : columns) {
    w.cstring(c.name);
    w.i32(0);   // table OID: not a table column
    w.i16(0);   // attribute number
    w.i32(c.type_oid);
    w.i16(-1);  // type size: variable
    w.i32(-1);  // type modifier: none
    w.i16(0);   // text format
  }
  w.end_message();
}

void build_data_row(ByteVector& out, const std::vector<std::optional<std::string>>& values) {
  ByteWriter w(out);
  w.begin_message(backend::kDataRow);
  w.i16(int16_t(values.size()));
  for (const auto& v : values) {
    if (!v) {
      w.i32(-1);  // SQL NULL
      continue;
    }
    w.i32(int32_t(v->size()));
    w.bytes(std::string_view(*v));
  }
  w.end_message();
}

}  // namespace pgmux::protocol
