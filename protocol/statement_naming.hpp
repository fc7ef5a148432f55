// Names of the prepared statements pgmux keeps on shared server connections (transaction pooling).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/bytes.hpp"

namespace pgmux::protocol {

// FNV-1a, the hash of the names below: go on from kFnvOffset, or from an earlier call's result.
inline constexpr uint64_t kFnvOffset = 1469598103934665603ull;
uint64_t fnv1a(uint64_t hash, ByteView bytes);
inline uint64_t fnv1a(uint64_t hash, std::string_view text) { return fnv1a(hash, as_bytes(text)); }

// Statements are shared between clients by content: the server-side name is a hash of the whole Parse message
// after the statement name (query text and parameter types) and of `settings_key`, the session settings the
// statement is analyzed under (0: the defaults), "pgmux_<16 hex digits>", so two clients that prepare the same
// statement under different names, alike in those settings, share one server statement.
std::string server_statement_name(ByteView parse_message, uint64_t settings_key = 0);

// Not of that form, so no server has it: a Bind or Describe of a client statement whose copy on the server has
// other result columns goes out naming it, and the server's 26000 for it, in its place in the replies, is what
// pgmux turns into PostgreSQL's 0A000 "cached plan must not change result type" (the server failed the batch and
// the block there as PostgreSQL fails them for the stale statement).
inline constexpr std::string_view kStalePlanStatement = "pgmux_stale_plan";

// The result shape of a prepared statement, from the body of the RowDescription its Describe 'S' answers (or
// an empty body for NoData): column names, types, sizes and modifiers, without the source table and column (not
// part of what PostgreSQL compares) or the format codes (a statement's Describe reports them as text; a portal's
// depend on its Bind). Two copies of one
// statement with different shapes were prepared on either side of DDL that changed its columns: PostgreSQL
// answers 0A000 "cached plan must not change result type" when the older one runs. Never 0 (0 = unknown).
uint64_t result_shape(ByteView row_description_body);

}  // namespace pgmux::protocol
