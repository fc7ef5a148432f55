// Cuts the client's byte stream into complete requests before a server is chosen (DESIGN.md §3.6): a Query,
// a FunctionCall, or extended-protocol messages up to and including Sync or Flush. Pure: it reads a byte
// view and fills a reusable RequestInfo whose string views point into that view.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "protocol/bytes.hpp"

namespace pgmux::proxy {

enum class RequestKind : uint8_t {
  Query,         // 'Q'
  Extended,      // Parse/Bind/Describe/Execute/Close ... ending in Sync or Flush
  FunctionCall,  // 'F'
  Terminate,     // 'X'
  CopyMessage,   // 'd' 'c' 'f' outside COPY: PostgreSQL ignores them; forwarded to keep byte-for-byte behaviour
};

// NAMEDATALEN - 1: the bytes of a prepared statement's name PostgreSQL keys it by.
inline constexpr size_t kStatementNameMax = 63;

struct ParsedStatement {
  std::string_view name;          // "" = unnamed; cut to kStatementNameMax bytes (full_name has the client's)
  std::string_view sql;
  protocol::ByteView message;     // the whole Parse message (tag to end), to prepare it again elsewhere
  uint32_t position = 0;          // its place among the request's messages (0: the first)
  // Only Close messages (which cannot fail) lie between it and the previous Parse or the request's start.
  bool after_closes_only = true;
  // The name as the client wrote it, for PostgreSQL's messages that quote it (42P05).
  std::string_view full_name() const;
};

// A message of an extended batch that names a prepared statement, in batch order: what the statement map must
// do, message by message (a Close then a Parse of the same name in one batch replaces it; the reverse drops it).
enum class StatementStepKind : uint8_t { Parse, Use, Close };
struct StatementStep {
  StatementStepKind kind = StatementStepKind::Use;
  std::string_view name;  // "" = the unnamed statement (Parse, Bind and Close 'S' only)
  uint32_t parse = 0;     // Parse: its index in RequestInfo::parses
  uint32_t close = 0;     // Close: its index among the request's Close messages, portals' too (CloseComplete order)
  uint32_t message = 0;   // its message's place in the request (0: the first)
};

struct RequestInfo {
  size_t size = 0;                          // bytes of the whole request
  std::string_view sql;                     // Query text
  std::vector<ParsedStatement> parses;      // Extended: every Parse, in order
  std::vector<std::string_view> used;       // Extended: statement names used by Bind / Describe 'S' (non-empty)
  std::vector<StatementStep> steps;         // Extended: Parse, Bind, Describe 'S', Close 'S', in order
  size_t closes = 0;                        // Extended: named statements closed (named Close 'S' steps)
  unsigned close_messages = 0;              // Extended: Close messages of any kind (each answered CloseComplete)
  unsigned messages = 0;                    // messages in the request
  unsigned named_binds = 0;                 // Extended: Binds of named statements
  // Messages PostgreSQL cannot read, which it answers ERROR 08P01 (scan_extended_message): a Query's (its sql is
  // empty then), or a Parse, Bind, Describe or Close of a batch. They record nothing and go to the server as sent.
  unsigned refused_messages = 0;
  uint32_t function_oid = 0;                // FunctionCall: the function's OID (0: the message is too short)
  uint16_t binds = 0;                       // Extended: Bind messages (at most 65,535 counted)
  uint16_t executes = 0;                    // Extended: Execute messages (likewise)
  RequestKind kind = RequestKind::Query;
  bool ends_with_sync = false;              // Extended: else it ends with Flush
  bool binds_unnamed = false;               // Extended: a Bind of the unnamed statement
  bool parses_named = false;                // Extended: a Parse of a named statement
  bool parses_unnamed = false;              // Extended: a Parse of the unnamed statement (so far, while scanning)
  bool closes_only_since_parse = true;      // Extended, while scanning: since the last Parse, only Close messages
  // Extended: a Bind or a Describe of the unnamed statement before any Parse of it in this request, i.e. of the
  // statement an earlier request parsed (which only the server that parsed it has).
  bool uses_prior_unnamed = false;
  void clear() {
    messages = 0;
    named_binds = 0;
    binds = 0;
    executes = 0;
    refused_messages = 0;
    function_oid = 0;
    binds_unnamed = false;
    parses_named = false;
    parses_unnamed = false;
    closes_only_since_parse = true;
    uses_prior_unnamed = false;
    kind = RequestKind::Query;
    size = 0;
    sql = {};
    parses.clear();
    used.clear();
    steps.clear();
    closes = 0;
    close_messages = 0;
    ends_with_sync = false;
  }
};

// InvalidLength: a message length PostgreSQL refuses as such (below 4, or negative as a 32-bit integer), which it
// answers by closing the connection; Error: anything else pgmux refuses, with a message for the client.
enum class ScanStatus : uint8_t { NeedMore, Complete, Error, InvalidLength };

struct ScanResult {
  ScanStatus status = ScanStatus::NeedMore;
  size_t bytes_needed = 0;  // NeedMore: the size the buffer must reach (0 = unknown, just read more)
  std::string error;        // Error: what was wrong, for the client's ErrorResponse
};

// Scans one request at the front of `buf`. Messages are checked against max_message_size; an extended batch
// may not exceed max_batch bytes in total (so a client cannot make pgmux buffer without bound).
ScanResult scan_request(protocol::ByteView buf, uint32_t max_message_size, size_t max_batch, RequestInfo& out);

}  // namespace pgmux::proxy
