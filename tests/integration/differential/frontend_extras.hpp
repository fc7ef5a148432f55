// Frontend messages the differential scripts send that the codec has no builder for (pgmux only forwards
// them): Bind with parameters and format codes, Execute, Flush, CopyData/CopyDone/CopyFail.
#pragma once
#include <optional>
#include <string>
#include <vector>
#include "protocol/bytes.hpp"

namespace pgmux::difftest {

using protocol::ByteVector;

struct BindParams {
  std::string portal;
  std::string statement;
  std::vector<int16_t> param_formats;               // empty = all text
  std::vector<std::optional<std::string>> values;   // nullopt = SQL NULL; raw bytes for binary params
  std::vector<int16_t> result_formats;              // empty = all text
};

void build_bind(ByteVector& out, const BindParams& params);
void build_execute(ByteVector& out, std::string_view portal, int32_t max_rows = 0);
void build_flush(ByteVector& out);
void build_copy_data(ByteVector& out, std::string_view data);
void build_copy_done(ByteVector& out);
void build_copy_fail(ByteVector& out, std::string_view reason);

// Big-endian int4 as the 4 raw bytes of a binary-format parameter.
std::string binary_int4(int32_t v);

}  // namespace pgmux::difftest
