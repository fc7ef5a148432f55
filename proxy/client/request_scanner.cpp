#include "proxy/client/request_scanner.hpp"

#include <cstdint>

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {

// PostgreSQL keys prepared statements by the first NAMEDATALEN - 1 bytes of their name (its hash table's key
// size): a Parse of a longer name is found by a Bind of that prefix, and two names alike up to there are one.
// The names pgmux keeps and compares are cut so (a view: no copy); what goes to the server is the client's bytes.
std::string_view statement_key(std::string_view name) { return name.substr(0, kStatementNameMax); }

ScanResult need(size_t bytes) { return ScanResult{ScanStatus::NeedMore, bytes, {}}; }
ScanResult error(std::string message) { return ScanResult{ScanStatus::Error, 0, std::move(message)}; }

// One message of an extended batch: records what routing needs (statements parsed, used, closed) and says
// whether the message ends the request. `at` is the message's offset, `end` the offset after it.
//
// A message whose body PostgreSQL cannot read (a name without its NUL, a Parse's type count past its end, a
// Describe or Close of a kind other than 'S' or 'P', bytes left over) goes to the server as it is and records
// nothing: PostgreSQL reads such a message whole before it acts on it (a Bind: up to its statement's name), answers
// ERROR 08P01 and skips to Sync, so the statement it names is neither created, used nor closed.
// statement_rewrite.hpp copies the same messages as they are.
enum class BatchStep : uint8_t { GoOn, EndsAfter, EndsBefore };

BatchStep refused(RequestInfo& out) {
  ++out.refused_messages;
  return BatchStep::GoOn;
}

BatchStep scan_extended_message(char tag, ByteView buf, size_t at, size_t end, RequestInfo& out) {
  const ByteView body = buf.subspan(at + kFrameHeaderSize, end - at - kFrameHeaderSize);
  switch (tag) {
    case frontend::kParse: {
      auto parse = parse_parse(body);
      if (!parse) return refused(out);
      const std::string_view name = statement_key(parse->statement);
      const uint32_t position = out.messages - 1;
      out.steps.push_back({StatementStepKind::Parse, name, static_cast<uint32_t>(out.parses.size()), 0, position});
      out.parses.push_back({name, parse->sql, buf.subspan(at, end - at), position, out.closes_only_since_parse});
      (parse->statement.empty() ? out.parses_unnamed : out.parses_named) = true;
      out.closes_only_since_parse = true;
      return BatchStep::GoOn;
    }
    case frontend::kBind: {
      if (out.binds < UINT16_MAX) ++out.binds;
      auto bind = parse_bind(body);
      if (!bind) return refused(out);
      out.steps.push_back({StatementStepKind::Use, statement_key(bind->statement), 0, 0, out.messages - 1});
      if (!bind->statement.empty()) {
        out.used.push_back(statement_key(bind->statement));
        ++out.named_binds;
      } else {
        out.binds_unnamed = true;
        out.uses_prior_unnamed = out.uses_prior_unnamed || !out.parses_unnamed;
      }
      return BatchStep::GoOn;
    }
    case frontend::kDescribe: {
      auto describe = parse_describe(body);
      if (!describe) return refused(out);
      if (describe->kind == 'S' && !describe->name.empty()) {
        out.used.push_back(statement_key(describe->name));
        out.steps.push_back({StatementStepKind::Use, statement_key(describe->name), 0, 0, out.messages - 1});
      } else if (describe->kind == 'S') {
        out.uses_prior_unnamed = out.uses_prior_unnamed || !out.parses_unnamed;
      }
      return BatchStep::GoOn;
    }
    case frontend::kClose: {
      ++out.close_messages;  // counted as ClientConn::close_messages_before counts them, whatever their body
      auto close = parse_close(body);
      if (!close) return refused(out);
      if (close->kind == 'S') {
        out.steps.push_back(
            {StatementStepKind::Close, statement_key(close->name), 0, out.close_messages - 1, out.messages - 1});
        out.closes += close->name.empty() ? 0 : 1;
      }
      return BatchStep::GoOn;
    }
    case frontend::kSync:
      out.ends_with_sync = true;
      return BatchStep::EndsAfter;
    case frontend::kFlush:
      return BatchStep::EndsAfter;
    case frontend::kQuery:
    case frontend::kFunctionCall:
    case frontend::kTerminate:
      // A simple-protocol message in the middle of an extended batch: end the batch before it. PostgreSQL
      // handles the batch up to here and then the new message; forwarding in two pieces keeps that order.
      return BatchStep::EndsBefore;
    case frontend::kCopyData:
    case frontend::kCopyDone:
    case frontend::kCopyFail:
      // COPY data for a COPY FROM STDIN the batch starts, sent before PostgreSQL asked for it (outside COPY it
      // ignores them): the batch goes out without it, as PostgreSQL answers it up to CopyInResponse before reading
      // the data; the data follows as messages of its own (ClientConn::dispatch_copy_message).
      return BatchStep::EndsBefore;
    case frontend::kExecute:
      if (out.executes < UINT16_MAX) ++out.executes;
      return BatchStep::GoOn;
    default:
      // A type PostgreSQL does not know: it ends the session with FATAL 08P01 once it reaches that message,
      // after answering what came before. Forwarded at once with what precedes it, so the client sees exactly
      // that instead of pgmux holding the batch for a Sync that may never come.
      return BatchStep::EndsAfter;
  }
}

// A request that is one message: Query, FunctionCall, Terminate, or COPY data outside COPY. A Query PostgreSQL
// cannot read (no NUL, or bytes after it) is one it answers ERROR 08P01 and ReadyForQuery: sent as it is, with no
// text to classify.
bool scan_single_message(char tag, ByteView body, RequestInfo& out) {
  switch (tag) {
    case frontend::kQuery: {
      out.kind = RequestKind::Query;
      if (auto query = parse_query(body)) {
        out.sql = query->sql;
      } else {
        out.refused_messages = 1;
      }
      return true;
    }
    case frontend::kFunctionCall:
      out.kind = RequestKind::FunctionCall;
      if (body.size() >= 4) out.function_oid = load_be32(body.data());
      return true;
    case frontend::kTerminate: out.kind = RequestKind::Terminate; return true;
    case frontend::kCopyData:
    case frontend::kCopyDone:
    case frontend::kCopyFail: out.kind = RequestKind::CopyMessage; return true;
    default: return false;
  }
}

}  // namespace

std::string_view ParsedStatement::full_name() const {
  if (message.size() < kFrameHeaderSize) return name;
  const auto parse = parse_parse(message.subspan(kFrameHeaderSize));
  return parse ? parse->statement : name;
}

ScanResult scan_request(ByteView buf, uint32_t max_message_size, size_t max_batch, RequestInfo& out) {
  out.clear();
  size_t pos = 0;
  while (true) {
    Frame frame = next_frame(buf.subspan(pos), max_message_size);
    if (frame.status == FrameStatus::NeedMore) return need(pos + kFrameHeaderSize);
    if (frame.status == FrameStatus::Error) {
      if (frame.error == FrameError::LengthTooSmall || frame.length > uint32_t{INT32_MAX}) {
        return ScanResult{ScanStatus::InvalidLength, 0, {}};
      }
      std::string what = std::string("invalid frontend message: ") + to_string(frame.error);
      if (frame.error == FrameError::LengthTooLarge) {
        what += " (max_message_size is " + std::to_string(max_message_size) + " bytes)";
      }
      return error(what);
    }
    if (pos + frame.total() > buf.size()) return need(pos + frame.total());
    const size_t at = pos;
    pos += frame.total();
    ++out.messages;
    if (out.messages == 1) {
      if (scan_single_message(frame.tag, buf.subspan(at + kFrameHeaderSize, frame.length - 4), out)) {
        out.size = pos;
        return ScanResult{ScanStatus::Complete, 0, {}};
      }
      out.kind = RequestKind::Extended;
    }
    if (frame.tag != frontend::kParse && frame.tag != frontend::kClose) out.closes_only_since_parse = false;
    switch (scan_extended_message(frame.tag, buf, at, pos, out)) {
      case BatchStep::EndsAfter:
        out.size = pos;
        return ScanResult{ScanStatus::Complete, 0, {}};
      case BatchStep::EndsBefore:
        out.size = at;
        out.ends_with_sync = false;
        return ScanResult{ScanStatus::Complete, 0, {}};
      case BatchStep::GoOn: break;
    }
    if (pos > max_batch) {
      return error("extended-protocol batch larger than " + std::to_string(max_batch) +
                   " bytes without Sync or Flush");
    }
  }
}

}  // namespace pgmux::proxy
