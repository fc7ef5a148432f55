// A TCP connection driven by libuv: receive buffer, writes of pgmux's own bytes, zero-copy forwarding of
// another connection's bytes, and the close lifecycle. The object deletes itself once its handle is closed
// and no peer write still points into its buffer (DESIGN.md §3.8).
#pragma once
#include <uv.h>

#include "protocol/bytes.hpp"
#include "proxy/net/io_buffer.hpp"
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

  void start_reading();
  void stop_reading();
  bool reading() const { return reading_; }

  // Sends bytes pgmux built itself; they are moved into the write request.
  void send_owned(protocol::ByteVector&& bytes);

  // Writes `count` buffers that point into source's receive buffer. Returns true when everything went out
  // at once; otherwise the source stays pinned (and should not read) until source.on_forward_done().
  bool forward_from(StreamConn& source, const uv_buf_t* bufs, unsigned count);
  bool pinned() const { return pinned_; }

  // Where the bytes read from and written to this socket are counted (metrics, SHOW STATS); set once.
  void count_bytes(const ByteCounters& counters) { bytes_ = counters; }

  // Bytes queued in libuv for this stream, for backpressure decisions.
  size_t write_queue_size() const { return tcp_.get()->write_queue_size; }

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

  IoBuffer in_;

 private:
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_forward_written(uv_write_t* req, int status);
  static void on_owned_written(uv_write_t* req, int status);
  void on_tcp_closed();
  void maybe_delete();
  void count_sent(size_t n) {
    if (bytes_.sent) bytes_.sent->add(n);
    if (bytes_.pool_sent) *bytes_.pool_sent += n;
  }

  UvTcp<StreamConn> tcp_{this, &StreamConn::on_tcp_closed};
  uv_write_t forward_req_;
  StreamConn* forward_source_ = nullptr;  // whose bytes forward_req_ is writing
  ByteCounters bytes_;
  bool pinned_ = false;
  bool reading_ = false;
};

}  // namespace pgmux::proxy
