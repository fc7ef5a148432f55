// StreamConn over TLS: ciphertext from the socket is decrypted into in_ (so the owner parses plaintext as
// always), and what the owner sends or forwards is encrypted into the session's output and written from
// there. Forwarding copies the source's bytes into records at once, but the source stays pinned until the
// socket has taken them, so backpressure works as it does in plain text: a slow TLS client still stops its
// server from being read.
#include "proxy/net/stream_conn.hpp"

#include <uv.h>

namespace pgmux::proxy {

void StreamConn::start_tls(std::shared_ptr<const TlsContext> context, protocol::ByteView already_received) {
  // On a closed connection the resume timer would never be closed, and the connection never freed.
  if (!open()) return;
  const bool client_side = !context->server_side();
  tls_ = std::make_unique<TlsIo>(this, std::move(context));
  tls_->resume.init(loop());
  if (client_side) tls_handshake_step();  // the client speaks first: the ClientHello goes out now
  if (!already_received.empty()) {
    auto space = tls_->session.input_space();  // a fresh session: the first read always fits
    const size_t n = std::min(space.size(), already_received.size());
    std::copy_n(already_received.begin(), n, space.begin());
    tls_->session.commit_input(n);
    schedule_tls_resume();  // not from inside the owner's on_data, which is where this is called from
  }
}

void StreamConn::schedule_tls_resume() {
  if (tls_->resume.open() && !uv_is_active(tls_->resume.handle())) {
    uv_timer_start(tls_->resume.get(), on_tls_resume, 0, 0);
  }
}

void StreamConn::on_tls_resume(uv_timer_t* timer) {
  auto* self = UvTimer<StreamConn>::owner_of(timer);
  if (self->open() && (self->reading_ || self->input_ended_) && !self->pinned_) self->tls_pump_input();
}

void StreamConn::tls_receive(size_t nread) {
  tls_->session.commit_input(nread);
  tls_pump_input();
}

// False when the connection cannot go on reading: the handshake is not done yet, or it failed.
bool StreamConn::tls_handshake_step() {
  if (tls_->session.established()) return true;
  const TlsSession::Status status = tls_->session.handshake();
  tls_flush();  // the server's flight, or the alert that explains a failure
  if (status == TlsSession::Status::Ok) {
    on_tls_ready();
    return open();
  }
  if (status != TlsSession::Status::WantMore) {
    stop_reading();
    on_tls_failed(status == TlsSession::Status::Closed ? "the client closed the connection during the handshake"
                                                       : tls_->session.error());
  }
  return false;
}

// Decrypts what fits into in_ (compacting it when nothing of it is pinned). *received: how many bytes.
TlsSession::Status StreamConn::tls_decrypt(size_t* received) {
  TlsSession::Status status = TlsSession::Status::Ok;
  while (status == TlsSession::Status::Ok) {
    auto space = in_.writable();
    if (space.empty() && !pinned_) {
      in_.compact();
      space = in_.writable();
    }
    if (space.empty()) break;  // the owner must make room; start_reading() resumes
    size_t n = 0;
    status = tls_->session.read(space, &n);
    in_.commit(n);
    *received += n;
  }
  return status;
}

// Tells the owner of the data, then of an end of stream behind it (close_notify, or a broken record), and goes
// on while the owner made room and more is buffered (no socket event would announce it).
void StreamConn::tls_pump_input() {
  if (!tls_handshake_step()) return;
  for (;;) {
    size_t received = 0;
    const TlsSession::Status status = tls_decrypt(&received);
    if (!tls_->session.output().empty()) tls_flush();  // an alert or a key update OpenSSL answered while reading
    if (received > 0) {
      count_received(received);
      if (open()) on_data();
    }
    if (!open()) return;
    if (status == TlsSession::Status::Closed || status == TlsSession::Status::Failed) {
      stop_reading();
      if (status == TlsSession::Status::Closed) {
        input_ended_ = true;  // close_notify: the client's end of input, as a TCP EOF is
        on_read_end(UV_EOF);
      } else {
        on_tls_failed(tls_->session.error());
      }
      return;
    }
    if (received == 0 || !reading_ || pinned_ || !tls_->session.has_buffered_input()) return;
  }
}

bool StreamConn::tls_forward(StreamConn& source, const uv_buf_t* bufs, unsigned count) {
  for (unsigned i = 0; i < count; ++i) {
    tls_->session.write(reinterpret_cast<const std::byte*>(bufs[i].base), bufs[i].len);
  }
  if (tls_flush()) return true;
  forward_source_ = &source;
  source.pinned_ = true;
  source.stop_reading();
  return false;
}

// Hands the session's output to the socket: uv_try_write first, the rest with one uv_write at a time from a
// second buffer (the output keeps filling meanwhile). True when nothing is left waiting.
bool StreamConn::tls_flush() {
  if (tls_->writing) return false;
  protocol::ByteVector& output = tls_->session.output();
  if (output.empty()) return true;
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(output.data()), static_cast<unsigned>(output.size()));
  int n = 0;
  if (tcp_.get()->write_queue_size == 0) {
    n = uv_try_write(stream(), &buf, 1);
    if (n == static_cast<int>(output.size())) {
      output.clear();
      return true;
    }
    if (n < 0 && n != UV_EAGAIN) {
      output.clear();
      on_write_error(n);
      return true;
    }
    n = std::max(n, 0);
  }
  tls_->in_flight.swap(output);  // both keep their capacity: no allocation once warmed up
  output.clear();
  buf = uv_buf_init(reinterpret_cast<char*>(tls_->in_flight.data()) + n,
                    static_cast<unsigned>(tls_->in_flight.size() - static_cast<size_t>(n)));
  tls_->write_req.data = this;
  if (const int rc = uv_write(&tls_->write_req, stream(), &buf, 1, on_tls_written); rc != 0) {
    tls_->in_flight.clear();
    on_write_error(rc);
    return true;
  }
  tls_->writing = true;
  return false;
}

void StreamConn::on_tls_written(uv_write_t* req, int status) {
  auto* self = static_cast<StreamConn*>(req->data);
  self->tls_->writing = false;
  self->tls_->in_flight.clear();
  if (status < 0) {
    self->release_forward_source();
    if (status != UV_ECANCELED && self->open()) self->on_write_error(status);
    return;
  }
  if (self->open() && !self->tls_flush()) return;  // more came meanwhile: the source waits for that too
  self->release_forward_source();
}

// A close_notify goes out with whatever the kernel takes at once; PostgreSQL says goodbye the same way.
void StreamConn::tls_close() {
  tls_->session.shutdown();
  if (tls_->writing || tls_->session.output().empty()) return;
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(tls_->session.output().data()),
                             static_cast<unsigned>(tls_->session.output().size()));
  uv_try_write(stream(), &buf, 1);
  tls_->session.output().clear();
}

}  // namespace pgmux::proxy
