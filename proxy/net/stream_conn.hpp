// A TCP connection driven by libuv: receive buffer, writes of pgmux's own bytes, zero-copy forwarding of
// another connection's bytes, and the close lifecycle. The object deletes itself once its handle is closed
// and no peer write still points into its buffer (DESIGN.md §3.8).
//
// Optionally TLS (start_tls): then the socket carries ciphertext, and everything above this class still sees
// plaintext in in_ and writes plaintext; stream_conn_tls.cpp does the translation.
#pragma once
#include <uv.h>

#include <memory>
#include <string>

#include "protocol/bytes.hpp"
#include "proxy/net/io_buffer.hpp"
#include "proxy/net/tls_session.hpp"
#include "proxy/net/uv_handle.hpp"
#include "proxy/ops/metrics.hpp"

namespace pgmux::proxy {

class StreamConn {
 public:
  explicit StreamConn(uv_loop_t* loop);
  StreamConn(const StreamConn&) = delete;
  StreamConn& operator=(const StreamConn&) = delete;

  uv_tcp_t* tcp() { return tcp_.get(); }
  uv_stream_t* stream() { return tcp_.stream(); }
  uv_loop_t* loop() { return tcp_.loop(); }
  bool open() const { return tcp_.open(); }
  // The socket's fd and this end's address (SHOW FDS, SHOW CLIENTS' local_addr); -1 / false when closed.
  int socket_fd() const;
  bool local_endpoint(std::string* addr, int* port) const;

  void start_reading();
  void stop_reading();
  bool reading() const { return reading_; }
  // The peer ended its sending side (EOF or TLS close_notify) and every byte before it is in in_: nothing more
  // comes, though writes may still reach it.
  bool input_ended() const { return input_ended_ && !(tls_ && tls_->session.has_buffered_input()); }

  // Sends `last`, then ends pgmux's sending side once what is queued went out (the peer reads an EOF); reading
  // goes on. Plain TCP only: false, and nothing sent, over TLS.
  bool finish_sending(protocol::ByteVector&& last);
  bool sending_finished() const { return sending_finished_; }

  // Sends bytes pgmux built itself; they are moved into the write request.
  void send_owned(protocol::ByteVector&& bytes);
  // Sends bytes that outlive the call only if they must: what the socket does not take at once is copied.
  void send_copy(protocol::ByteView bytes);

  // Writes `count` buffers that point into source's receive buffer. Returns true when everything went out
  // at once; otherwise the source stays pinned (and should not read) until source.on_forward_done().
  bool forward_from(StreamConn& source, const uv_buf_t* bufs, unsigned count);
  bool pinned() const { return pinned_; }

  // Where the bytes read from and written to this socket are counted (metrics, SHOW STATS); set once. The
  // counters belong to the worker (clients) or the pool (servers), which outlive the connection.
  void count_bytes(const ByteCounters* counters) { bytes_ = counters; }

  // Bytes queued in libuv for this stream (and ciphertext not yet handed to libuv), for backpressure decisions.
  size_t write_queue_size() const { return tcp_.get()->write_queue_size + (tls_ ? tls_->session.output().size() : 0); }

  // TLS from the next byte read on: a handshake with `context`, as the server (a TlsServerContext) or as the
  // client (a TlsClientContext: the ClientHello goes out at once). `already_received` is ciphertext that came
  // before the switch (PostgreSQL 17's direct TLS: the ClientHello was the first read). The owner hears
  // on_tls_ready() once the handshake is done, or on_tls_failed().
  void start_tls(std::shared_ptr<const TlsContext> context, protocol::ByteView already_received = {});
  const TlsSession* tls() const { return tls_ ? &tls_->session : nullptr; }

  // Detaches (on_closing) and closes. What the kernel already took (an ErrorResponse sent just before) still
  // reaches the peer; bytes libuv still queues mean the peer is not reading, and are dropped.
  void close();

 protected:
  virtual ~StreamConn();
  virtual void on_data() = 0;                 // new bytes in in_
  virtual void on_read_end(int status) = 0;   // UV_EOF or an error; the connection is still open
  virtual void on_write_error(int status) = 0;
  virtual void on_forward_done() {}           // our pinned bytes were written by the peer
  virtual void on_closing() {}                // close() was called: detach from pools and peers
  virtual void on_tls_ready() {}              // the handshake is done; what follows is plaintext in in_
  virtual void on_tls_failed(const std::string& /*why*/) { close(); }  // the handshake or a record failed

  IoBuffer in_;

 private:
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_forward_written(uv_write_t* req, int status);
  static void on_owned_written(uv_write_t* req, int status);
  // What the socket took of `bytes` at once (all of them when they need no queueing: TLS, closed, an error).
  size_t send_now(protocol::ByteView bytes);
  ssize_t try_write(const uv_buf_t* bufs, unsigned count);
  void queue_owned(protocol::ByteVector&& bytes, size_t from);  // bytes[from..] after what libuv queues
  void on_tcp_closed();
  void maybe_delete();
  void release_forward_source();
  // TLS (stream_conn_tls.cpp).
  void tls_receive(size_t nread);
  void tls_pump_input();
  TlsSession::Status tls_decrypt(size_t* received);
  bool tls_handshake_step();
  bool tls_forward(StreamConn& source, const uv_buf_t* bufs, unsigned count);
  bool tls_flush();
  void tls_close();
  void schedule_tls_resume();
  static void on_tls_written(uv_write_t* req, int status);
  static void on_tls_resume(uv_timer_t* timer);
  void count_received(size_t n) {
    if (bytes_ == nullptr) return;
    if (bytes_->received) bytes_->received->add(n);
    if (bytes_->pool_received) *bytes_->pool_received += n;
  }
  void count_sent(size_t n) {
    if (bytes_ == nullptr) return;
    if (bytes_->sent) bytes_->sent->add(n);
    if (bytes_->pool_sent) *bytes_->pool_sent += n;
  }

  UvTcp<StreamConn> tcp_{this, &StreamConn::on_tcp_closed};
  StreamConn* forward_source_ = nullptr;  // whose bytes a forward write still in libuv's queue points into
  const ByteCounters* bytes_ = nullptr;
  bool pinned_ = false;
  bool reading_ = false;
  bool input_ended_ = false;
  bool sending_finished_ = false;
  // TLS, on the heap once start_tls runs, so a plain connection carries one pointer (an idle client's memory,
  // issue 13): the session, the ciphertext libuv is writing (one write at a time; what comes meanwhile waits in
  // the session's output), and a zero-delay timer that resumes decryption of input the socket will not signal
  // again (it arrived while in_ was full). Freed with the connection, after both handles are closed.
  struct TlsIo {
    TlsIo(StreamConn* owner, std::shared_ptr<const TlsContext> context)
        : session(std::move(context)), resume(owner, &StreamConn::on_tcp_closed) {}
    TlsSession session;
    protocol::ByteVector in_flight;
    uv_write_t write_req;
    bool writing = false;
    UvTimer<StreamConn> resume;
  };
  std::unique_ptr<TlsIo> tls_;
};

}  // namespace pgmux::proxy
