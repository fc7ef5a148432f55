#include "protocol/startup.hpp"

#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"
#include "protocol/framer.hpp"

namespace pgmux::protocol {

const std::string* StartupMessage::find(std::string_view name) const {
  for (const auto& [k, v] : parameters) {
    if (k == name) return &v;
  }
  return nullptr;
}

namespace {

StartupParseError fail(std::string message) { return StartupParseError{std::move(message)}; }

// name/value cstring pairs ended by a single NUL that must be the packet's last byte.
StartupPacket parse_startup_message(int32_t version, ByteReader& r) {
  StartupMessage msg;
  msg.protocol_version = version;
  while (true) {
    if (r.at_end()) return fail("invalid startup packet layout: expected terminator as last byte");
    std::string_view name = r.cstring();
    if (!r.ok()) return fail("invalid startup packet layout: unterminated parameter name");
    if (name.empty()) break;  // the terminating NUL
    std::string_view value = r.cstring();
    if (!r.ok()) return fail("invalid startup packet layout: parameter \"" + std::string(name) + "\" has no value");
    msg.parameters.emplace_back(std::string(name), std::string(value));
  }
  if (!r.at_end()) return fail("invalid startup packet layout: expected terminator as last byte");
  return msg;
}

}  // namespace

StartupPacket parse_startup_packet(ByteView packet) {
  if (packet.size() < 8) return fail("invalid length of startup packet");
  const uint32_t length = load_be32(packet.data());
  // The caller may hand over a larger buffer; only the length-prefixed packet is parsed.
  if (length < 8 || length > kMaxStartupPacket || length > packet.size()) {
    return fail("invalid length of startup packet");
  }
  ByteReader r(packet.subspan(4, length - 4));
  const int32_t code = r.i32();
  switch (code) {
    case kSslRequestCode:
      if (!r.at_end()) return fail("invalid length of SSLRequest packet");
      return SslRequest{};
    case kGssEncRequestCode:
      if (!r.at_end()) return fail("invalid length of GSSENCRequest packet");
      return GssEncRequest{};
    case kCancelRequestCode: {
      if (length != 16) return fail("invalid length of CancelRequest packet");
      CancelRequest c;
      c.process_id = r.i32();
      c.secret_key = r.i32();
      return c;
    }
    default:
      break;
  }
  const auto major = uint32_t(code) >> 16;
  const auto minor = uint32_t(code) & 0xffff;
  // Any 3.x is accepted (a newer minor is negotiated down by the caller), as PostgreSQL does.
  if (major != 3) {
    return fail("unsupported frontend protocol " + std::to_string(major) + "." + std::to_string(minor) +
                ": server supports 3.0 to 3.0");
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
