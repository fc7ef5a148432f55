#include "protocol/startup.hpp"

#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"
#include "protocol/framer.hpp"

namespace pgmux::protocol {

const std::string* StartupMessage::find(std::string_view name) const {
  const std::string* found = nullptr;
  for (const auto& [k, v] : parameters) {
    if (k == name) found = &v;
  }
  return found;
}

namespace {

StartupParseError refuse(StartupRefusal refusal, std::string message, int32_t version_code) {
  return StartupParseError{refusal, std::move(message), version_code};
}

// PostgreSQL words every way a StartupMessage's name/value list can be broken the same way.
StartupParseError layout_error(int32_t version) {
  return refuse(StartupRefusal::Layout, "invalid startup packet layout: expected terminator as last byte", version);
}

// name/value cstring pairs ended by a single NUL that must be the packet's last byte.
StartupPacket parse_startup_message(int32_t version, ByteReader& r) {
  StartupMessage msg;
  msg.protocol_version = version;
  while (true) {
    if (r.at_end()) return layout_error(version);
    std::string_view name = r.cstring();
    if (!r.ok()) return layout_error(version);
    if (name.empty()) break;  // the terminating NUL
    std::string_view value = r.cstring();
    if (!r.ok()) return layout_error(version);
    if (name.starts_with("_pq_.")) {
      msg.protocol_options.emplace_back(name);
    } else {
      msg.parameters.emplace_back(std::string(name), std::string(value));
    }
  }
  if (!r.at_end()) return layout_error(version);
  return msg;
}

}  // namespace

StartupPacket parse_startup_packet(ByteView packet, EncryptionRequestsDone done) {
  const uint32_t length = packet.size() >= 4 ? load_be32(packet.data()) : 0;
  // The caller may hand over a larger buffer; only the length-prefixed packet is parsed.
  if (packet.size() < 8 || length < 8 || length > kMaxStartupPacket || length > packet.size()) {
    return refuse(StartupRefusal::BadLength, "invalid length of startup packet", 0);
  }
  ByteReader r(packet.subspan(4, length - 4));
  const int32_t code = r.i32();
  if (code == kCancelRequestCode) {
    if (length != 16) return refuse(StartupRefusal::BadLength, "invalid length of startup packet", code);
    CancelRequest c;
    c.process_id = r.i32();
    c.secret_key = r.i32();
    return c;
  }
  // Extra bytes after an encryption request's code are ignored, as PostgreSQL does. A repeated one falls
  // through to the version check below.
  if (code == kSslRequestCode && !done.ssl) return SslRequest{};
  if (code == kGssEncRequestCode && !done.gss) return GssEncRequest{};
  const auto major = uint32_t(code) >> 16;
  const auto minor = uint32_t(code) & 0xffff;
  // Any 3.x is accepted: a newer minor is negotiated down to 3.0 (StartupMessage::needs_negotiation).
  if (major != 3) {
    return refuse(StartupRefusal::UnsupportedProtocol,
                  "unsupported frontend protocol " + std::to_string(major) + "." + std::to_string(minor) +
                      ": server supports 3.0 to 3.0",
                  code);
  }
  return parse_startup_message(code, r);
}

void build_startup_message(ByteVector& out, const std::vector<std::pair<std::string, std::string>>& parameters) {
  ByteWriter w(out);
  w.begin_untagged();
  w.i32(kProtocolVersion3);
  for (const auto& [name, value] : parameters) {
    w.cstring(name);
    w.cstring(value);
  }
  w.u8(0);
  w.end_message();
}

void build_ssl_request(ByteVector& out) {
  ByteWriter w(out);
  w.begin_untagged();
  w.i32(kSslRequestCode);
  w.end_message();
}

void build_gssenc_request(ByteVector& out) {
  ByteWriter w(out);
  w.begin_untagged();
  w.i32(kGssEncRequestCode);
  w.end_message();
}

void build_cancel_request(ByteVector& out, int32_t process_id, int32_t secret_key) {
  ByteWriter w(out);
  w.begin_untagged();
  w.i32(kCancelRequestCode);
  w.i32(process_id);
  w.i32(secret_key);
  w.end_message();
}

}  // namespace pgmux::protocol
