#include "protocol/frontend_messages.hpp"

#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"

namespace pgmux::protocol {

namespace {
// A decoder succeeds only when every read was in bounds and the body was consumed exactly.
bool done(const ByteReader& r) { return r.ok() && r.at_end(); }

template <typename Kinded>
std::optional<Kinded> parse_kind_and_name(ByteView body) {
  ByteReader r(body);
  Kinded m;
  m.kind = char(r.u8());
  m.name = r.cstring();
  if (!done(r) || (m.kind != 'S' && m.kind != 'P')) return std::nullopt;
  return m;
}
}  // namespace

std::optional<QueryMessage> parse_query(ByteView body) {
  ByteReader r(body);
  QueryMessage m{r.cstring()};
  if (!done(r)) return std::nullopt;
  return m;
}

std::optional<ParseMessage> parse_parse(ByteView body) {
  ByteReader r(body);
  ParseMessage m;
  m.statement = r.cstring();
  m.sql = r.cstring();
  const auto count = static_cast<uint16_t>(r.i16());  // PostgreSQL reads the count unsigned: up to 65535 types
  if (!r.ok() || r.remaining() != size_t{count} * 4) return std::nullopt;
  m.parameter_type_bytes = r.rest();
  return m;
}

std::vector<int32_t> ParseMessage::parameter_types() const {
  std::vector<int32_t> types(parameter_count());
  for (size_t i = 0; i < types.size(); ++i) types[i] = parameter_type(i);
  return types;
}

std::optional<BindMessage> parse_bind(ByteView body) {
  ByteReader r(body);
  BindMessage m;
  m.portal = r.cstring();
  m.statement = r.cstring();
  if (!r.ok()) return std::nullopt;  // the rest (formats, values) is forwarded undecoded
  return m;
}

std::optional<DescribeMessage> parse_describe(ByteView body) { return parse_kind_and_name<DescribeMessage>(body); }

std::optional<CloseMessage> parse_close(ByteView body) { return parse_kind_and_name<CloseMessage>(body); }

std::optional<ExecuteMessage> parse_execute(ByteView body) {
  ByteReader r(body);
  ExecuteMessage m;
  m.portal = r.cstring();
  m.max_rows = r.i32();
  if (!done(r)) return std::nullopt;
  return m;
}

std::optional<std::string_view> parse_password_message(ByteView body) {
  ByteReader r(body);
  std::string_view s = r.cstring();
  if (!done(r)) return std::nullopt;
  return s;
}

std::optional<SaslInitialResponse> parse_sasl_initial_response(ByteView body) {
  ByteReader r(body);
  SaslInitialResponse m;
  m.mechanism = r.cstring();
  const int32_t len = r.i32();
  if (!r.ok() || len < -1) return std::nullopt;
  if (len >= 0) m.data = r.bytes(len);
  m.absent = len == -1;
  if (!done(r)) return std::nullopt;
  return m;
}

void build_query(ByteVector& out, std::string_view sql) {
  ByteWriter w(out);
  w.begin_message(frontend::kQuery);
  w.cstring(sql);
  w.end_message();
}

void build_terminate(ByteVector& out) {
  ByteWriter w(out);
  w.begin_message(frontend::kTerminate);
  w.end_message();
}

void build_sync(ByteVector& out) {
  ByteWriter w(out);
  w.begin_message(frontend::kSync);
  w.end_message();
}

void build_password_message(ByteVector& out, std::string_view password) {
  ByteWriter w(out);
  w.begin_message(frontend::kPassword);
  w.cstring(password);
  w.end_message();
}

void build_sasl_initial_response(ByteVector& out, std::string_view mechanism, std::string_view data) {
  ByteWriter w(out);
  w.begin_message(frontend::kPassword);
  w.cstring(mechanism);
  w.i32(int32_t(data.size()));
  w.bytes(data);
  w.end_message();
}

void build_sasl_response(ByteVector& out, std::string_view data) {
  ByteWriter w(out);
  w.begin_message(frontend::kPassword);
  w.bytes(data);
  w.end_message();
}

void build_parse(ByteVector& out, std::string_view statement, std::string_view sql,
                 const std::vector<int32_t>& parameter_types) {
  ByteWriter w(out);
  w.begin_message(frontend::kParse);
  w.cstring(statement);
  w.cstring(sql);
  w.i16(int16_t(parameter_types.size()));
  for (int32_t oid : parameter_types) w.i32(oid);
  w.end_message();
}

void build_close(ByteVector& out, char kind, std::string_view name) {
  ByteWriter w(out);
  w.begin_message(frontend::kClose);
  w.u8(uint8_t(kind));
  w.cstring(name);
  w.end_message();
}

void build_describe(ByteVector& out, char kind, std::string_view name) {
  ByteWriter w(out);
  w.begin_message(frontend::kDescribe);
  w.u8(uint8_t(kind));
  w.cstring(name);
  w.end_message();
}

void build_bind(ByteVector& out, std::string_view portal, std::string_view statement,
                const std::vector<std::optional<std::string>>& parameters) {
  ByteWriter w(out);
  w.begin_message(frontend::kBind);
  w.cstring(portal);
  w.cstring(statement);
  w.i16(0);  // no parameter format codes: all text
  w.i16(int16_t(parameters.size()));
  for (const auto& p : parameters) {
    if (!p) {
      w.i32(-1);
      continue;
    }
    w.i32(int32_t(p->size()));
    w.bytes(std::string_view(*p));
  }
  w.i16(0);  // no result format codes: all text
  w.end_message();
}

void build_execute(ByteVector& out, std::string_view portal, int32_t max_rows) {
  ByteWriter w(out);
  w.begin_message(frontend::kExecute);
  w.cstring(portal);
  w.i32(max_rows);
  w.end_message();
}

void build_flush(ByteVector& out) {
  ByteWriter w(out);
  w.begin_message(frontend::kFlush);
  w.end_message();
}

}  // namespace pgmux::protocol
