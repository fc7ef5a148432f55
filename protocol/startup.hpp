// Startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.
#pragma once
#include <optional>
#include <utility>
#include <variant>
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

inline constexpr int32_t kProtocolVersion3 = 196608;  // 3.0
inline constexpr int32_t kSslRequestCode = 80877103;
inline constexpr int32_t kGssEncRequestCode = 80877104;
inline constexpr int32_t kCancelRequestCode = 80877102;

struct StartupMessage {
  int32_t protocol_version = kProtocolVersion3;
  std::vector<std::pair<std::string, std::string>> parameters;  // in wire order, user/database included
  const std::string* find(std::string_view name) const;
};
struct SslRequest {};
struct GssEncRequest {};
struct CancelRequest {
  int32_t process_id = 0;
  int32_t secret_key = 0;
};
struct StartupParseError {
  std::string message;  // human readable, e.g. "unsupported frontend protocol 2.0"
};

using StartupPacket = std::variant<StartupMessage, SslRequest, GssEncRequest, CancelRequest, StartupParseError>;

// packet = one whole frame from next_startup_frame (length prefix included); bytes past the length are ignored.
StartupPacket parse_startup_packet(ByteView packet);

void build_startup_message(ByteVector& out, const std::vector<std::pair<std::string, std::string>>& parameters);
void build_ssl_request(ByteVector& out);
void build_gssenc_request(ByteVector& out);
void build_cancel_request(ByteVector& out, int32_t process_id, int32_t secret_key);

}  // namespace pgmux::protocol
