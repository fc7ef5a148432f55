#include "tests/integration/differential/frontend_extras.hpp"

#include "protocol/byte_writer.hpp"
#include "protocol/frontend_messages.hpp"

namespace pgmux::difftest {

using protocol::ByteWriter;

void build_bind(ByteVector& out, const BindParams& params) {
  ByteWriter w(out);
  w.begin_message(protocol::frontend::kBind);
  w.cstring(params.portal);
  w.cstring(params.statement);
  w.i16(static_cast<int16_t>(params.param_formats.size()));
  for (int16_t f : params.param_formats) w.i16(f);
  w.i16(static_cast<int16_t>(params.values.size()));
  for (const auto& v : params.values) {
    if (!v) {
      w.i32(-1);
      continue;
    }
    w.i32(static_cast<int32_t>(v->size()));
    w.bytes(std::string_view(*v));
  }
  w.i16(static_cast<int16_t>(params.result_formats.size()));
  for (int16_t f : params.result_formats) w.i16(f);
  w.end_message();
}

void build_execute(ByteVector& out, std::string_view portal, int32_t max_rows) {
  ByteWriter w(out);
  w.begin_message(protocol::frontend::kExecute);
  w.cstring(portal);
  w.i32(max_rows);
  w.end_message();
}

void build_flush(ByteVector& out) {
  ByteWriter w(out);
  w.begin_message(protocol::frontend::kFlush);
  w.end_message();
}

void build_copy_data(ByteVector& out, std::string_view data) {
  ByteWriter w(out);
  w.begin_message(protocol::frontend::kCopyData);
  w.bytes(data);
  w.end_message();
}

void build_copy_done(ByteVector& out) {
  ByteWriter w(out);
  w.begin_message(protocol::frontend::kCopyDone);
  w.end_message();
}

void build_copy_fail(ByteVector& out, std::string_view reason) {
  ByteWriter w(out);
  w.begin_message(protocol::frontend::kCopyFail);
  w.cstring(reason);
  w.end_message();
}

std::string binary_int4(int32_t v) {
  auto u = static_cast<uint32_t>(v);
  std::string s(4, '\0');
  s[0] = static_cast<char>((u >> 24) & 0xff);
  s[1] = static_cast<char>((u >> 16) & 0xff);
  s[2] = static_cast<char>((u >> 8) & 0xff);
  s[3] = static_cast<char>(u & 0xff);
  return s;
}

}  // namespace pgmux::difftest
