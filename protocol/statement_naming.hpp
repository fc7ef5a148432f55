// Names of the prepared statements pgmux keeps on shared server connections (transaction pooling).
#pragma once
#include <string>

#include "protocol/bytes.hpp"

namespace pgmux::protocol {

// Statements are shared between clients by content: the server-side name is a hash of the whole Parse message
// after the statement name (query text and parameter types), "pgmux_<16 hex digits>", so two clients that
// prepare the same statement under different names share one server statement.
std::string server_statement_name(ByteView parse_message);

}  // namespace pgmux::protocol
