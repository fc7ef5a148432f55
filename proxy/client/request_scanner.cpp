#include "proxy/client/request_scanner.hpp"

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {

ScanResult need(size_t bytes) { return ScanResult{ScanStatus::NeedMore, bytes, {}}; }
ScanResult error(std::string message) { return ScanResult{ScanStatus::Error, 0, std::move(message)}; }

}  // namespace

ScanResult scan_request(ByteView buf, uint32_t max_message_size, size_t max_batch, RequestInfo& out) {
  out.clear();
  size_t pos = 0;
  bool extended = false;
  while (true) {
    Frame frame = next_frame(buf.subspan(pos), max_message_size);
    if (frame.status == FrameStatus::NeedMore) return need(pos + kFrameHeaderSize);
    if (frame.status == FrameStatus::Error) {
      std::string what = std::string("invalid frontend message: ") + to_string(frame.error);
      if (frame.error == FrameError::LengthTooLarge) {
        what += " (max_message_size is " + std::to_string(max_message_size) + " bytes)";
      }
      return error(what);
    }
    if (pos + frame.total() > buf.size()) return need(pos + frame.total());
    ByteView body = buf.subspan(pos + 5, frame.length - 4);
    const char tag = frame.tag;
    pos += frame.total();
    ++out.messages;

    if (!extended) {
      switch (tag) {
        case frontend::kQuery: {
          auto query = parse_query(body);
          if (!query) return error("malformed Query message");
          out.kind = RequestKind::Query;
          out.sql = query->sql;
          out.size = pos;
          return ScanResult{ScanStatus::Complete, 0, {}};
        }
        case frontend::kFunctionCall:
          out.kind = RequestKind::FunctionCall;
          out.size = pos;
          return ScanResult{ScanStatus::Complete, 0, {}};
        case frontend::kTerminate:
          out.kind = RequestKind::Terminate;
          out.size = pos;
          return ScanResult{ScanStatus::Complete, 0, {}};
        case frontend::kCopyData:
        case frontend::kCopyDone:
        case frontend::kCopyFail:
          out.kind = RequestKind::CopyMessage;
          out.size = pos;
          return ScanResult{ScanStatus::Complete, 0, {}};
        default:
          extended = true;
          out.kind = RequestKind::Extended;
          break;
      }
    }

    switch (tag) {
      case frontend::kParse: {
        auto parse = parse_parse(body);
        if (!parse) return error("malformed Parse message");
        out.parses.push_back({parse->statement, parse->sql, buf.subspan(pos - frame.total(), frame.total())});
        break;
      }
      case frontend::kBind: {
        auto bind = parse_bind(body);
        if (!bind) return error("malformed Bind message");
        if (!bind->statement.empty()) {
          out.used.push_back(bind->statement);
        } else {
          out.binds_unnamed = true;
        }
        break;
      }
      case frontend::kDescribe: {
        auto describe = parse_describe(body);
        if (!describe) return error("malformed Describe message");
        if (describe->kind == 'S' && !describe->name.empty()) out.used.push_back(describe->name);
        break;
      }
      case frontend::kClose: {
        auto close = parse_close(body);
        if (!close) return error("malformed Close message");
        if (close->kind == 'S' && !close->name.empty()) out.closed.push_back(close->name);
        break;
      }
      case frontend::kSync:
        out.ends_with_sync = true;
        out.size = pos;
        return ScanResult{ScanStatus::Complete, 0, {}};
      case frontend::kFlush:
        out.size = pos;
        return ScanResult{ScanStatus::Complete, 0, {}};
      case frontend::kQuery:
      case frontend::kFunctionCall:
      case frontend::kTerminate:
        // A simple-protocol message in the middle of an extended batch: end the batch before it. PostgreSQL
        // handles the batch up to here and then the new message; forwarding in two pieces keeps that order.
        out.size = pos - frame.total();
        out.ends_with_sync = false;
        return ScanResult{ScanStatus::Complete, 0, {}};
      case frontend::kExecute:
      case frontend::kCopyData:  // outside COPY PostgreSQL ignores these; they travel with the batch
      case frontend::kCopyDone:
      case frontend::kCopyFail:
        break;
      default:
        // A type PostgreSQL does not know: it ends the session with FATAL 08P01 once it reaches that message,
        // after answering what came before. Forwarded at once with what precedes it, so the client sees exactly
        // that instead of pgmux holding the batch for a Sync that may never come.
        out.size = pos;
        out.ends_with_sync = false;
        return ScanResult{ScanStatus::Complete, 0, {}};
    }
    if (pos > max_batch) {
      return error("extended-protocol batch larger than " + std::to_string(max_batch) +
                   " bytes without Sync or Flush");
    }
  }
}

}  // namespace pgmux::proxy
