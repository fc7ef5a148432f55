// What the Describe pgmux puts behind a Parse told of a statement on one server (0 and empty: not known).
#pragma once
#include <cstdint>

#include "protocol/bytes.hpp"

namespace pgmux::proxy {

struct StatementDescription {
  uint64_t shape = 0;  // protocol::result_shape of its RowDescription or NoData
  protocol::ByteVector parameter_types;  // its ParameterDescription's body: the types its Parse fixed here
};

}  // namespace pgmux::proxy
