// Renames prepared statements inside a batch of frontend messages, for transaction pooling: a client's
// statement "s1" lives on shared server connections under a pgmux-wide name, so every message that names
// a statement (Parse, Bind, Describe 'S', Close 'S') is rewritten, with its length patched, before it is
// written to the server. Pure: no I/O, no state; the caller owns the name mapping.
#pragma once
#include <functional>
#include <optional>
#include <string_view>

#include "protocol/bytes.hpp"

namespace pgmux::protocol {

// rename(client_name) -> server-side name, or nullopt to keep the message as is. The returned view must
// stay valid until rename is called again (e.g. point into the caller's map); it must be non-empty and
// contain no NUL, otherwise the rewrite fails (mapping to the unnamed statement would change semantics).
using StatementRenamer = std::function<std::optional<std::string_view>(std::string_view)>;

// Rewrites the statement names in `batch`, which must hold whole tagged messages only (the output of a
// request collector). The unnamed statement ("") is never offered to rename; portal names are untouched;
// every other message, and every byte after a rewritten name, is copied byte for byte. The output is
// appended to `out`. `batch` must not point into `out`.
//
// A statement message PostgreSQL cannot read (a name without its NUL, a Parse that does not decode, a Describe or
// Close of another kind than 'S' or 'P' or with bytes after the name) is copied as it is and its name is not
// offered to rename: PostgreSQL answers it ERROR 08P01 before looking the name up, and skips to Sync.
//
// Returns false on a batch that does not frame (a zero tag, a bad or truncated length) or a bad rename result;
// `out` then keeps its previous contents. One pass: rename may already have been asked for the names before the
// bad part (the request fails whole then). Allocates only for `out`'s growth, which a caller may reserve ahead (a
// server-side name is longer than most client names).
bool rewrite_statement_names(ByteView batch, const StatementRenamer& rename, ByteVector& out);

}  // namespace pgmux::protocol
