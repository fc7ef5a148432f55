// Startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.
#pragma once
#include <optional>
#include <utility>
#include <variant>
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

inline constexpr int32_t kProtocolVersion3 = 196608;  // 3.0, the newest version PostgreSQL 15 speaks
inline constexpr int32_t kSslRequestCode = 80877103;
inline constexpr int32_t kGssEncRequestCode = 80877104;
inline constexpr int32_t kCancelRequestCode = 80877102;

struct StartupMessage {
  int32_t protocol_version = kProtocolVersion3;
  std::vector<std::pair<std::string, std::string>> parameters;  // in wire order, user/database included
  // "_pq_."-prefixed names, reserved for protocol options (PostgreSQL 15 knows none): in wire order, kept
  // out of `parameters`.
  std::vector<std::string> protocol_options;
  // The last occurrence, as PostgreSQL reads a repeated name.
  const std::string* find(std::string_view name) const;
  // A 3.x minor above 0 or protocol options: PostgreSQL 15 answers NegotiateProtocolVersion (3.0 and the
  // options it did not recognise, all of them) and goes on with the login.
  bool needs_negotiation() const { return (protocol_version & 0xffff) != 0 || !protocol_options.empty(); }
};
struct SslRequest {};
struct GssEncRequest {};
struct CancelRequest {
  int32_t process_id = 0;
  int32_t secret_key = 0;
};

// What PostgreSQL 15's postmaster does with a startup packet it refuses.
enum class StartupRefusal : uint8_t {
  BadLength,            // logs "invalid length of startup packet" and closes without a word
  Layout,               // FATAL 08P01 "invalid startup packet layout: expected terminator as last byte"
  UnsupportedProtocol,  // FATAL 0A000 "unsupported frontend protocol X.Y: server supports 3.0 to 3.0"
};
struct StartupParseError {
  StartupRefusal refusal = StartupRefusal::Layout;
  std::string message;       // PostgreSQL's wording, e.g. "unsupported frontend protocol 2.0: server supports ..."
  int32_t version_code = 0;  // the protocol version (or request code) the packet carried
};

// An ErrorResponse for this version code goes out in protocol 2's format ('E', text, NUL; no length): a client
// of major 1 or 2 reads that. Version 0 counts as "not known yet", answered in protocol 3 (PostgreSQL's rule).
inline bool answers_in_protocol2(int32_t version_code) {
  return version_code != 0 && (uint32_t(version_code) >> 16) < 3;
}

// Which encryption requests the connection already had declined. PostgreSQL takes at most one of each kind,
// in either order: a second SSLRequest (or GSSENCRequest) is read as a startup packet of protocol 1234.5679
// (1234.5680) and refused as an unsupported protocol.
struct EncryptionRequestsDone {
  bool ssl = false;
  bool gss = false;
};

using StartupPacket = std::variant<StartupMessage, SslRequest, GssEncRequest, CancelRequest, StartupParseError>;

// packet = one whole frame from next_startup_frame (length prefix included); bytes past the length are ignored.
// Mirrors PostgreSQL 15's ProcessStartupPacket: an SSLRequest or GSSENCRequest may carry extra bytes; a
// CancelRequest must be 16 bytes.
StartupPacket parse_startup_packet(ByteView packet, EncryptionRequestsDone done = {});

void build_startup_message(ByteVector& out, const std::vector<std::pair<std::string, std::string>>& parameters);
void build_ssl_request(ByteVector& out);
void build_gssenc_request(ByteVector& out);
void build_cancel_request(ByteVector& out, int32_t process_id, int32_t secret_key);

}  // namespace pgmux::protocol
