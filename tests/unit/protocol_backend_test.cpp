// Backend messages and ErrorResponse/NoticeResponse: builders round-trip; malformed bodies fail.
#include <doctest/doctest.h>

#include "protocol/backend_messages.hpp"
#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/sqlstate.hpp"

using namespace pgmux::protocol;
using namespace std::string_view_literals;

namespace {
ByteView body_of(const ByteVector& msg, char tag) {
  Frame f = next_frame(msg);
  REQUIRE(f.status == FrameStatus::Frame);
  CHECK(f.tag == tag);
  CHECK(f.total() == msg.size());
  return ByteView(msg).subspan(5);
}
ByteVector auth_body(int32_t code, std::string_view payload) {
  ByteVector out;
  ByteWriter w(out);
  w.i32(code);
  w.bytes(payload);
  return out;
}
}  // namespace

TEST_CASE("Authentication requests round-trip") {
  ByteVector ok, clear, md5, sasl, cont, fin;
  build_authentication_ok(ok);
  build_authentication_cleartext(clear);
  build_authentication_md5(md5, {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}});
  build_authentication_sasl(sasl, {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"});
  build_authentication_sasl_continue(cont, "r=abc,s=xyz,i=4096");
  build_authentication_sasl_final(fin, "v=sig");

  auto a = parse_authentication(body_of(ok, backend::kAuthentication));
  REQUIRE(a);
  CHECK(a->code == AuthCode::Ok);
  CHECK(a->payload.empty());
  CHECK(parse_authentication(body_of(clear, 'R'))->code == AuthCode::CleartextPassword);

  auto m = parse_authentication(body_of(md5, 'R'));
  REQUIRE(m);
  CHECK(m->code == AuthCode::Md5Password);
  REQUIRE(m->payload.size() == 4);
  CHECK(m->payload[3] == std::byte{4});

  auto s = parse_authentication(body_of(sasl, 'R'));
  REQUIRE(s);
  CHECK(s->code == AuthCode::Sasl);
  CHECK(s->sasl_mechanisms == std::vector<std::string_view>{"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"});

  auto c = parse_authentication(body_of(cont, 'R'));
  REQUIRE(c);
  CHECK(c->code == AuthCode::SaslContinue);
  CHECK(as_chars(c->payload) == "r=abc,s=xyz,i=4096");
  auto f = parse_authentication(body_of(fin, 'R'));
  REQUIRE(f);
  CHECK(f->code == AuthCode::SaslFinal);
  CHECK(as_chars(f->payload) == "v=sig");
}

TEST_CASE("Authentication malformed bodies") {
  CHECK_FALSE(parse_authentication(ByteView{}));
  CHECK_FALSE(parse_authentication(as_bytes("\0\0\0"sv)));
  CHECK_FALSE(parse_authentication(auth_body(0, "x")));           // Ok with payload
  CHECK_FALSE(parse_authentication(auth_body(5, "abc")));         // md5 salt too short
  CHECK_FALSE(parse_authentication(auth_body(5, "abcde")));       // md5 salt too long
  CHECK_FALSE(parse_authentication(auth_body(10, "SCRAM")));      // unterminated mechanism
  CHECK_FALSE(parse_authentication(auth_body(10, "SCRAM\0"sv)));  // missing list terminator
  CHECK_FALSE(parse_authentication(auth_body(10, "\0"sv)));       // empty list
  CHECK_FALSE(parse_authentication(auth_body(10, "M\0\0x"sv)));   // trailing bytes
  // Codes pgmux does not handle still decode; the caller rejects them.
  auto gss = parse_authentication(auth_body(7, ""));
  REQUIRE(gss);
  CHECK(gss->code == AuthCode::Gss);
}

TEST_CASE("ParameterStatus, BackendKeyData, ReadyForQuery, CommandComplete round-trip") {
  ByteVector ps, kd, z, cc, eq;
  build_parameter_status(ps, "server_version", "15.6");
  build_backend_key_data(kd, 12345, -99);
  build_ready_for_query(z, 'T');
  build_command_complete(cc, "SELECT 3");
  build_empty_query_response(eq);

  auto p = parse_parameter_status(body_of(ps, backend::kParameterStatus));
  REQUIRE(p);
  CHECK(p->name == "server_version");
  CHECK(p->value == "15.6");
  auto k = parse_backend_key_data(body_of(kd, backend::kBackendKeyData));
  REQUIRE(k);
  CHECK(k->process_id == 12345);
  CHECK(k->secret_key == -99);
  auto r = parse_ready_for_query(body_of(z, backend::kReadyForQuery));
  REQUIRE(r);
  CHECK(r->status == 'T');
  CHECK(parse_command_complete(body_of(cc, backend::kCommandComplete)) == "SELECT 3"sv);
  CHECK(body_of(eq, backend::kEmptyQueryResponse).empty());

  CHECK_FALSE(parse_parameter_status(as_bytes("name\0"sv)));
  CHECK_FALSE(parse_parameter_status(as_bytes("a\0b\0c"sv)));
  CHECK_FALSE(parse_backend_key_data(as_bytes("1234567"sv)));
  CHECK_FALSE(parse_backend_key_data(as_bytes("123456789"sv)));
  CHECK_FALSE(parse_ready_for_query(as_bytes("X")));
  CHECK_FALSE(parse_ready_for_query(as_bytes("II")));
  CHECK_FALSE(parse_ready_for_query(ByteView{}));
  CHECK(parse_ready_for_query(as_bytes("I"))->status == 'I');
  CHECK(parse_ready_for_query(as_bytes("E"))->status == 'E');
  CHECK_FALSE(parse_command_complete(as_bytes("SELECT")));
}

TEST_CASE("RowDescription and DataRow layout") {
  ByteVector rd, dr;
  build_row_description(rd, {{"name", 25}, {"n", 23}});
  build_data_row(dr, {std::string("alice"), std::nullopt, std::string("")});

  ByteReader r(body_of(rd, backend::kRowDescription));
  CHECK(r.i16() == 2);
  CHECK(r.cstring() == "name");
  CHECK(r.i32() == 0);
  CHECK(r.i16() == 0);
  CHECK(r.i32() == 25);
  CHECK(r.i16() == -1);
  CHECK(r.i32() == -1);
  CHECK(r.i16() == 0);
  CHECK(r.cstring() == "n");
  r.bytes(4 + 2);
  CHECK(r.i32() == 23);
  r.bytes(2 + 4 + 2);
  CHECK(r.ok());
  CHECK(r.at_end());

  ByteReader d(body_of(dr, backend::kDataRow));
  CHECK(d.i16() == 3);
  CHECK(d.i32() == 5);
  CHECK(as_chars(d.bytes(5)) == "alice");
  CHECK(d.i32() == -1);
  CHECK(d.i32() == 0);
  CHECK(d.ok());
  CHECK(d.at_end());
}

TEST_CASE("ErrorResponse round-trip and field order") {
  ByteVector e;
  build_error_response(e, "FATAL", sqlstate::kTooManyConnections, "too many clients", "pool full", "retry");
  ByteView body = body_of(e, backend::kErrorResponse);
  // S, V, C, M, D, H then the terminating 0.
  ByteReader r(body);
  std::vector<char> order;
  while (true) {
    uint8_t t = r.u8();
    REQUIRE(r.ok());
    if (t == 0) break;
    order.push_back(char(t));
    r.cstring();
  }
  CHECK(r.at_end());
  CHECK(order == std::vector<char>{'S', 'V', 'C', 'M', 'D', 'H'});

  auto f = parse_error_fields(body);
  REQUIRE(f);
  CHECK(f->severity == "FATAL");
  CHECK(f->sqlstate == "53300");
  CHECK(f->message == "too many clients");
  CHECK(f->detail == "pool full");
  CHECK(f->hint == "retry");
  CHECK(f->other.empty());
}

TEST_CASE("ErrorResponse without detail/hint omits them") {
  ByteVector e;
  build_error_response(e, "ERROR", sqlstate::kProtocolViolation, "bad");
  ByteView body = body_of(e, 'E');
  CHECK(as_chars(body) == "SERROR\0VERROR\0C08P01\0Mbad\0\0"sv);
  auto f = parse_error_fields(body);
  REQUIRE(f);
  CHECK(f->detail.empty());
  CHECK(f->hint.empty());
}

TEST_CASE("NegotiateProtocolVersion: PostgreSQL 15's bytes (3.0 and the options it did not recognise)") {
  ByteVector v;
  build_negotiate_protocol_version(v, 196608, {"_pq_.foo", "_pq_.baz"});
  // As a PostgreSQL 15 primary answered protocol 3.0 with _pq_.foo and _pq_.baz, captured with a raw socket.
  CHECK(as_chars(v) == "v\0\0\0\x1e\0\x03\0\0\0\0\0\x02_pq_.foo\0_pq_.baz\0"sv);
  ByteVector none;
  build_negotiate_protocol_version(none, 196608, {});
  CHECK(as_chars(none) == "v\0\0\0\x0c\0\x03\0\0\0\0\0\0"sv);
}

TEST_CASE("a protocol-2 FATAL: 'E', the text with its severity and newline, a NUL, no length") {
  ByteVector e;
  build_protocol2_fatal(e, "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
  CHECK(as_chars(e) == "EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0"sv);
}

TEST_CASE("NoticeResponse round-trip") {
  ByteVector n;
  build_notice_response(n, "WARNING", "01000", "careful");
  auto f = parse_error_fields(body_of(n, backend::kNoticeResponse));
  REQUIRE(f);
  CHECK(f->severity == "WARNING");
  CHECK(f->sqlstate == "01000");
  CHECK(f->message == "careful");
}

TEST_CASE("parse_error_fields: server-style bodies and malformed ones") {
  // Localized S, non-localized V (V wins), plus fields kept in wire order.
  auto f =
      parse_error_fields(as_bytes("SFEHLER\0VERROR\0C42P01\0Mrelation does not exist\0P15\0Fparse_relation.c\0\0"sv));
  REQUIRE(f);
  CHECK(f->severity == "ERROR");
  CHECK(f->sqlstate == "42P01");
  REQUIRE(f->other.size() == 2);
  CHECK(f->other[0] == std::pair<char, std::string>{'P', "15"});
  CHECK(f->other[1].first == 'F');
  // Only S (pre-9.6 servers).
  CHECK(parse_error_fields(as_bytes("SERROR\0\0"sv))->severity == "ERROR");
  // Empty field list.
  CHECK(parse_error_fields(as_bytes("\0"sv)));
  CHECK_FALSE(parse_error_fields(ByteView{}));                         // no terminator
  CHECK_FALSE(parse_error_fields(as_bytes("SERROR\0"sv)));             // no terminator
  CHECK_FALSE(parse_error_fields(as_bytes("SERROR"sv)));               // unterminated value
  CHECK_FALSE(parse_error_fields(as_bytes("SERROR\0\0\0"sv)));         // bytes after terminator
}

TEST_CASE("error_field: one field's value, without a parse") {
  const auto body = as_bytes("SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"sv);
  CHECK(error_field(body, 'C') == "57P01");
  CHECK(error_field(body, 'M') == "terminating connection due to administrator command");
  CHECK(error_field(body, 'D').empty());                       // absent
  CHECK(error_field(as_bytes("C57P0"sv), 'C').empty());         // unterminated value
  CHECK(error_field(ByteView{}, 'C').empty());
}

TEST_CASE("what a standby refused is told by SQLSTATE and routine, in any language") {
  const auto refusal = [](std::string_view body) {
    auto error = parse_error_fields(as_bytes(body));
    REQUIRE(error);
    return standby_refusal(*error);
  };
  CHECK(refusal("SERROR\0VERROR\0C25006\0Mcannot execute INSERT in a read-only transaction\0\0"sv) ==
        StandbyRefusal::ReadOnly);
  CHECK(refusal("SFEHLER\0VERROR\0C0A000\0Mx\0RGetSerializableTransactionSnapshot\0\0"sv) ==
        StandbyRefusal::Serializable);
  CHECK(refusal("SERROR\0VERROR\0C0A000\0Mcannot access temporary or unlogged relations during recovery\0"
                "Fplancat.c\0Rget_relation_info\0\0"sv) == StandbyRefusal::Unlogged);
  // 0A000 from another routine, or those routines with another SQLSTATE: no refusal pgmux can route around.
  CHECK(refusal("SERROR\0VERROR\0C0A000\0Mx\0RRevalidateCachedQuery\0\0"sv) == StandbyRefusal::None);
  CHECK(refusal("SERROR\0VERROR\0C42P01\0Mx\0Rget_relation_info\0\0"sv) == StandbyRefusal::None);
  CHECK(refusal("SERROR\0VERROR\0C0A000\0Mcannot use serializable mode in a hot standby\0\0"sv) ==
        StandbyRefusal::None);
  // A recovery conflict: 40001 or 40P01 where interrupts are served. An ordinary serialization failure or deadlock
  // comes from elsewhere; a FATAL ends the connection (is_recovery_conflict alone tells it).
  CHECK(refusal("SERROR\0VERROR\0C40001\0Mcanceling statement due to conflict with recovery\0"
                "RProcessInterrupts\0\0"sv) == StandbyRefusal::RecoveryConflict);
  CHECK(refusal("SERROR\0VERROR\0C40P01\0Mx\0RProcessRecoveryConflictInterrupt\0\0"sv) ==
        StandbyRefusal::RecoveryConflict);
  CHECK(refusal("SERROR\0VERROR\0C40001\0Mcould not serialize access\0RExecUpdate\0\0"sv) == StandbyRefusal::None);
  CHECK(refusal("SERROR\0VERROR\0C40P01\0Mdeadlock detected\0RDeadLockReport\0\0"sv) == StandbyRefusal::None);
  const auto fatal = parse_error_fields(as_bytes(
      "SFATAL\0VFATAL\0C40001\0Mterminating connection due to conflict with recovery\0RProcessInterrupts\0\0"sv));
  REQUIRE(fatal);
  CHECK(standby_refusal(*fatal) == StandbyRefusal::None);
  CHECK(is_recovery_conflict(*fatal));
}

TEST_CASE("a changed cached plan is told by SQLSTATE and routine, in any language") {
  // As PostgreSQL sends it under lc_messages = 'de_DE': S localized, V not, M translated, R the routine.
  auto german = parse_error_fields(as_bytes(
      "SFEHLER\0VERROR\0C0A000\0Mgecachter Plan darf den Ergebnistyp nicht \xc3\xa4ndern\0Fplancache.c\0L730\0"
      "RRevalidateCachedQuery\0\0"sv));
  REQUIRE(german);
  CHECK(german->routine == "RevalidateCachedQuery");
  CHECK(is_cached_plan_change(*german));
  REQUIRE(german->other.size() == 2);  // F and L stay in `other`

  // Same SQLSTATE, another routine: some other unsupported feature, not a plan change.
  auto other = parse_error_fields(as_bytes(
      "SERROR\0VERROR\0C0A000\0Mcached plan must not change result type\0RtransformSelectStmt\0\0"sv));
  REQUIRE(other);
  CHECK_FALSE(is_cached_plan_change(*other));
  // The routine alone is not enough either.
  auto wrong_state = parse_error_fields(as_bytes("SERROR\0VERROR\0C42P01\0Mx\0RRevalidateCachedQuery\0\0"sv));
  REQUIRE(wrong_state);
  CHECK_FALSE(is_cached_plan_change(*wrong_state));
  // pgmux's own errors carry no routine.
  ByteVector own;
  build_error_response(own, "ERROR", sqlstate::kFeatureNotSupported, "cached plan must not change result type");
  auto mine = parse_error_fields(body_of(own, 'E'));
  REQUIRE(mine);
  CHECK(mine->routine.empty());
  CHECK_FALSE(is_cached_plan_change(*mine));
}
