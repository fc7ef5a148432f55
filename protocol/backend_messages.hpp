// Backend (server -> client) message tags, decoders for what pgmux must read, builders for what it sends.
// Decoders take the message body (after tag and length) and return nullopt on a malformed body.
#pragma once
#include <array>
#include <optional>
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

namespace backend {
inline constexpr char kAuthentication = 'R';
inline constexpr char kBackendKeyData = 'K';
inline constexpr char kBindComplete = '2';
inline constexpr char kCloseComplete = '3';
inline constexpr char kCommandComplete = 'C';
inline constexpr char kCopyBothResponse = 'W';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyInResponse = 'G';
inline constexpr char kCopyOutResponse = 'H';
inline constexpr char kDataRow = 'D';
inline constexpr char kEmptyQueryResponse = 'I';
inline constexpr char kErrorResponse = 'E';
inline constexpr char kFunctionCallResponse = 'V';
inline constexpr char kNegotiateProtocolVersion = 'v';
inline constexpr char kNoData = 'n';
inline constexpr char kNoticeResponse = 'N';
inline constexpr char kNotificationResponse = 'A';
inline constexpr char kParameterDescription = 't';
inline constexpr char kParameterStatus = 'S';
inline constexpr char kParseComplete = '1';
inline constexpr char kPortalSuspended = 's';
inline constexpr char kReadyForQuery = 'Z';
inline constexpr char kRowDescription = 'T';
}  // namespace backend

// Authentication request codes (the int32 after 'R').
enum class AuthCode : int32_t {
  Ok = 0,
  CleartextPassword = 3,
  Md5Password = 5,
  Gss = 7,
  GssContinue = 8,
  Sspi = 9,
  Sasl = 10,
  SaslContinue = 11,
  SaslFinal = 12,
};

struct AuthenticationRequest {
  AuthCode code = AuthCode::Ok;
  ByteView payload;                     // bytes after the code (md5: 4-byte salt; SASL*: data)
  std::vector<std::string_view> sasl_mechanisms;  // filled for AuthCode::Sasl
};
struct ParameterStatus { std::string_view name; std::string_view value; };
struct BackendKeyData { int32_t process_id = 0; int32_t secret_key = 0; };
struct ReadyForQuery { char status = 'I'; };  // 'I' idle, 'T' in transaction, 'E' failed transaction

std::optional<AuthenticationRequest> parse_authentication(ByteView body);
std::optional<ParameterStatus> parse_parameter_status(ByteView body);
std::optional<BackendKeyData> parse_backend_key_data(ByteView body);
std::optional<ReadyForQuery> parse_ready_for_query(ByteView body);  // status must be I, T or E
std::optional<std::string_view> parse_command_complete(ByteView body);  // the command tag

void build_authentication_ok(ByteVector& out);
void build_authentication_cleartext(ByteVector& out);
void build_authentication_md5(ByteVector& out, const std::array<std::byte, 4>& salt);
void build_authentication_sasl(ByteVector& out, const std::vector<std::string>& mechanisms);
void build_authentication_sasl_continue(ByteVector& out, std::string_view data);
void build_authentication_sasl_final(ByteVector& out, std::string_view data);
void build_parameter_status(ByteVector& out, std::string_view name, std::string_view value);
void build_backend_key_data(ByteVector& out, int32_t process_id, int32_t secret_key);
// NegotiateProtocolVersion: the newest version the server speaks for the client's major (PostgreSQL sends the
// whole version code, 196608 for 3.0) and the protocol options it did not recognise.
void build_negotiate_protocol_version(ByteVector& out, int32_t newest_version,
                                      const std::vector<std::string>& unrecognized_options);
void build_ready_for_query(ByteVector& out, char status);
void build_command_complete(ByteVector& out, std::string_view tag);
void build_empty_query_response(ByteVector& out);
void build_parse_complete(ByteVector& out);
void build_bind_complete(ByteVector& out);
void build_no_data(ByteVector& out);

// Result sets (admin console): a RowDescription of text columns, then DataRows (nullopt = SQL NULL).
struct ColumnSpec { std::string name; int32_t type_oid = 25; /* text */ };
void build_row_description(ByteVector& out, const std::vector<ColumnSpec>& columns);
void build_data_row(ByteVector& out, const std::vector<std::optional<std::string>>& values);

}  // namespace pgmux::protocol
