// Frontend (client -> server) message tags, decoders for what pgmux must read, builders for what it sends.
// Decoders take the message body (after tag and length) and return nullopt on a malformed body.
#pragma once
#include <optional>
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

namespace frontend {
inline constexpr char kBind = 'B';
inline constexpr char kClose = 'C';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyFail = 'f';
inline constexpr char kDescribe = 'D';
inline constexpr char kExecute = 'E';
inline constexpr char kFlush = 'H';
inline constexpr char kFunctionCall = 'F';
inline constexpr char kParse = 'P';
inline constexpr char kPassword = 'p';  // PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse
inline constexpr char kQuery = 'Q';
inline constexpr char kSync = 'S';
inline constexpr char kTerminate = 'X';

// A message type PostgreSQL reads after login (PasswordMessage is not: only during authentication). Any other
// byte gets FATAL 08P01 "invalid frontend message type N" at once, before a length is read.
constexpr bool is_request_message_type(char tag) {
  switch (tag) {
    case kBind: case kClose: case kCopyData: case kCopyDone: case kCopyFail: case kDescribe: case kExecute:
    case kFlush: case kFunctionCall: case kParse: case kQuery: case kSync: case kTerminate:
      return true;
    default:
      return false;
  }
}
}  // namespace frontend

struct QueryMessage { std::string_view sql; };
struct ParseMessage {
  std::string_view statement;  // "" = unnamed
  std::string_view sql;
  // The parameter type OIDs, still in wire order (4 bytes each): decoded on demand, so that scanning a Parse
  // on the hot path allocates nothing.
  ByteView parameter_type_bytes;
  size_t parameter_count() const { return parameter_type_bytes.size() / 4; }
  int32_t parameter_type(size_t i) const { return int32_t(load_be32(parameter_type_bytes.data() + 4 * i)); }
  std::vector<int32_t> parameter_types() const;
};
struct BindMessage { std::string_view portal; std::string_view statement; };  // only the names are decoded
struct DescribeMessage { char kind = 'S'; std::string_view name; };           // kind: 'S' statement, 'P' portal
struct CloseMessage { char kind = 'S'; std::string_view name; };
struct ExecuteMessage { std::string_view portal; int32_t max_rows = 0; };
struct SaslInitialResponse {
  std::string_view mechanism;
  ByteView data;
  bool absent = false;  // length -1: no initial response (the client sends it when asked, in a SASLResponse)
};

std::optional<QueryMessage> parse_query(ByteView body);
std::optional<ParseMessage> parse_parse(ByteView body);
std::optional<BindMessage> parse_bind(ByteView body);
std::optional<DescribeMessage> parse_describe(ByteView body);
std::optional<CloseMessage> parse_close(ByteView body);
std::optional<ExecuteMessage> parse_execute(ByteView body);
std::optional<std::string_view> parse_password_message(ByteView body);  // cleartext or "md5..." string
std::optional<SaslInitialResponse> parse_sasl_initial_response(ByteView body);
// SASLResponse body is raw bytes: the whole body.

void build_query(ByteVector& out, std::string_view sql);
void build_terminate(ByteVector& out);
void build_sync(ByteVector& out);
void build_password_message(ByteVector& out, std::string_view password);
void build_sasl_initial_response(ByteVector& out, std::string_view mechanism, std::string_view data);
void build_sasl_response(ByteVector& out, std::string_view data);
void build_parse(ByteVector& out, std::string_view statement, std::string_view sql,
                 const std::vector<int32_t>& parameter_types = {});
void build_close(ByteVector& out, char kind, std::string_view name);
void build_describe(ByteVector& out, char kind, std::string_view name);
// Bind with text-format parameters (nullopt = NULL) and text results; Execute; Flush.
void build_bind(ByteVector& out, std::string_view portal, std::string_view statement,
                const std::vector<std::optional<std::string>>& parameters = {});
void build_execute(ByteVector& out, std::string_view portal, int32_t max_rows = 0);
void build_flush(ByteVector& out);

}  // namespace pgmux::protocol
