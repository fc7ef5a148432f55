// ClientConn, COPY FROM STDIN on the request path: the data streams to the server that asked for it, unscanned
// (a CopyData message may be any size), until CopyDone or CopyFail; what a failed COPY leaves in flight goes to the
// same server, which drops it (ClientConn::CopyIn). The server's side (CopyInResponse, the error) is in
// client_replies.cpp.
#include "proxy/client/client_conn.hpp"

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "proxy/net/forward_batch.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

using namespace protocol;

// Streams COPY FROM STDIN data to the server that asked for it, until CopyDone or CopyFail, then the rest of the
// message COPY ended in (CopyIn::EndingMessage, CopyIn::DroppedMessage).
bool ClientConn::relay_copy() {
  ServerConn* server = active_;
  if (!server) {
    copy_in_ = CopyIn::Off;
    return true;
  }
  ForwardBatch batch;
  size_t pos = in_.parsed();
  bool tail_done = false;  // the rest of a CopyData the server drops went out
  while (!batch.full() && copying()) {
    size_t available = in_.end() - pos;
    if (copy_pass_remaining_ > 0) {
      if (available == 0) break;
      size_t n = std::min(copy_pass_remaining_, available);
      batch.add(in_.data() + pos, n);
      pos += n;
      copy_pass_remaining_ -= n;
      if (copy_pass_remaining_ == 0 && copy_in_ != CopyIn::Streaming) {
        tail_done = copy_in_ == CopyIn::DroppedMessage;
        copy_in_ = CopyIn::Off;
      }
      continue;
    }
    Frame frame = next_frame(ByteView(in_.data() + pos, available), worker_.max_message_size());
    if (frame.status == FrameStatus::NeedMore) break;
    if (frame.status == FrameStatus::Error) {
      fail({Failure::InvalidCopyMessage, {to_string(frame.error)}});
      return false;
    }
    size_t n = std::min(frame.total(), available);
    batch.add(in_.data() + pos, n);
    pos += n;
    copy_pass_remaining_ = frame.total() - n;
    // Anything but CopyData ends COPY mode on the server (CopyDone, CopyFail, or a message it will reject), except
    // Sync and Flush, which PostgreSQL ignores during COPY IN.
    const bool ignored = frame.tag == frontend::kSync || frame.tag == frontend::kFlush;
    if (frame.tag != frontend::kCopyData && !ignored) {
      copy_in_ = copy_pass_remaining_ > 0 ? CopyIn::EndingMessage : CopyIn::Off;
    }
  }
  in_.advance_parsed(pos - in_.parsed());
  if (batch.empty()) return false;
  if (!server->forward_from(*this, batch.bufs(), batch.count())) return false;
  in_.consume_to(in_.parsed());
  // The tail of a message the client sent after the server's error: the server may be idle now (given back in
  // transaction pooling), and no reply will come to do it. (Not at a CopyDone: the COPY's reply is still to come,
  // and in an extended batch nothing is owed meanwhile.)
  if (tail_done && in_.unparsed() == 0 && !server->has_outstanding()) drop_idle_servers();
  // Go on when more may be buffered: a full batch, or COPY just ended (a Sync or the next query may follow).
  return open() && (batch.full() || !copying());
}

// COPY data sent right behind the COPY command, before CopyInResponse came back: it belongs to the server
// running that command. With nothing in flight PostgreSQL would ignore it; so does pgmux.
bool ClientConn::dispatch_copy_message() {
  if (active_ && active_->has_outstanding()) {
    const auto tag = static_cast<char>(in_.unparsed_bytes()[0]);
    if (tag == frontend::kCopyDone || tag == frontend::kCopyFail) active_->note_copy_end_ahead();
    uv_buf_t buf =
        uv_buf_init(reinterpret_cast<char*>(in_.data() + in_.parsed()), static_cast<unsigned>(request_.size));
    in_.advance_parsed(request_.size);
    if (active_->forward_from(*this, &buf, 1)) in_.consume_to(in_.parsed());
    return open() && !pinned();
  }
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  if (in_.unparsed() == 0) drop_idle_servers();  // after a failed COPY: its server may go back (transaction pooling)
  return true;
}

}  // namespace pgmux::proxy
