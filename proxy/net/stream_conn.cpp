#include "proxy/net/stream_conn.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace pgmux::proxy {
namespace {

// libuv's uv_buf_t is laid out as struct iovec on Unix (uv/unix.h: "may be cast to struct iovec"): try_write hands
// an array of them to writev as they are.
static_assert(sizeof(uv_buf_t) == sizeof(iovec) && offsetof(uv_buf_t, base) == offsetof(iovec, iov_base) &&
              offsetof(uv_buf_t, len) == offsetof(iovec, iov_len));

struct OwnedWrite {
  uv_write_t req;
  protocol::ByteVector bytes;
  StreamConn* conn;
};

}  // namespace

StreamConn::StreamConn(uv_loop_t* loop) { tcp_.init(loop); }

int StreamConn::socket_fd() const {
  uv_os_fd_t fd = -1;
  if (!tcp_.open() || uv_fileno(reinterpret_cast<const uv_handle_t*>(tcp_.get()), &fd) != 0) return -1;
  return fd;
}

bool StreamConn::local_endpoint(std::string* addr, int* port) const {
  const int fd = socket_fd();
  sockaddr_storage local{};
  socklen_t size = sizeof(local);
  if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size) != 0) return false;
  char text[INET6_ADDRSTRLEN] = "";
  if (local.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&local);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    *port = ntohs(in->sin_port);
  } else if (local.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&local);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    *port = ntohs(in6->sin6_port);
  } else {
    return false;  // a unix socket has no address worth showing
  }
  *addr = text;
  return true;
}

StreamConn::~StreamConn() = default;

bool StreamConn::finish_sending(protocol::ByteVector&& last) {
  if (!open() || tls_ || sending_finished_) return false;
  if (!last.empty()) send_owned(std::move(last));
  if (!open()) return false;
  auto* req = new uv_shutdown_t;
  // The request outlives a connection closed meanwhile (libuv calls back with UV_ECANCELED): it frees itself.
  if (uv_shutdown(req, stream(), [](uv_shutdown_t* done, int) { delete done; }) != 0) {
    delete req;
    return false;
  }
  sending_finished_ = true;
  return true;
}

void StreamConn::start_reading() {
  if (!open() || pinned_) return;
  if (input_ended_) {  // the socket has nothing more; TLS may still hold decrypted input in_ had no room for
    if (tls_ && tls_->session.has_buffered_input()) schedule_tls_resume();
    return;
  }
  if (!reading_ && uv_read_start(stream(), on_alloc, on_read) == 0) reading_ = true;
  // Decrypted input may be waiting that no socket event will announce again.
  if (reading_ && tls_ && tls_->session.has_buffered_input()) schedule_tls_resume();
}

void StreamConn::stop_reading() {
  if (!reading_) return;
  uv_read_stop(stream());
  reading_ = false;
}

void StreamConn::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = UvTcp<StreamConn>::owner_of(handle);
  if (self->tls_) {
    auto cipher = self->tls_->session.input_space();  // empty when OpenSSL has not taken the last read: UV_ENOBUFS
    *buf = uv_buf_init(reinterpret_cast<char*>(cipher.data()), static_cast<unsigned>(cipher.size()));
    return;
  }
  auto space = self->in_.writable();
  if (space.empty() && !self->pinned_) {
    self->in_.compact();  // what the owner consumed frees room (never while a peer write points into it)
    space = self->in_.writable();
  }
  if (space.empty()) {
    // No room: the owner will stop reading once it sees the buffer full; give libuv nothing (it reports
    // UV_ENOBUFS, which on_read ignores).
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf = uv_buf_init(reinterpret_cast<char*>(space.data()), static_cast<unsigned>(space.size()));
}

void StreamConn::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  auto* self = UvTcp<StreamConn>::owner_of(stream);
  if (!self->open()) return;
  if (nread > 0) {
    if (self->tls_) {
      self->tls_receive(static_cast<size_t>(nread));  // counts the plaintext, as sends do
      return;
    }
    self->count_received(static_cast<size_t>(nread));
    self->in_.commit(static_cast<size_t>(nread));
    self->on_data();
    return;
  }
  if (nread == 0 || nread == UV_ENOBUFS) {
    if (nread == UV_ENOBUFS) self->stop_reading();
    return;
  }
  self->stop_reading();
  self->input_ended_ = nread == UV_EOF;
  self->on_read_end(static_cast<int>(nread));
}

void StreamConn::send_owned(protocol::ByteVector&& bytes) {
  const size_t sent = send_now(bytes);
  if (sent == bytes.size()) return;
  queue_owned(std::move(bytes), sent);
}

void StreamConn::send_copy(protocol::ByteView bytes) {
  const size_t sent = send_now(bytes);
  if (sent == bytes.size()) return;
  queue_owned(protocol::ByteVector(bytes.begin() + static_cast<ptrdiff_t>(sent), bytes.end()), 0);
}

size_t StreamConn::send_now(protocol::ByteView bytes) {
  if (!open() || bytes.empty()) return bytes.size();
  count_sent(bytes.size());
  if (tls_) {
    tls_->session.write(bytes.data(), bytes.size());
    tls_flush();
    return bytes.size();
  }
  if (write_queue_size() != 0) return 0;  // behind what libuv still queues
  uv_buf_t buf = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(bytes.data())),
                             static_cast<unsigned>(bytes.size()));
  const ssize_t n = try_write(&buf, 1);
  if (n > 0) return static_cast<size_t>(n);
  if (n != UV_EAGAIN) {
    on_write_error(static_cast<int>(n));
    return bytes.size();  // nothing more to do with them
  }
  return 0;
}

// What uv_try_write does, without the checks that never apply here (nothing in libuv's queue: both callers check;
// no handle to send; a stream never shut down nor left unwritable: a read error closes it): they cost about 100
// instructions per write on the hot path (bench/callgrind.md, session 28). Returns the bytes the kernel took,
// UV_EAGAIN when it took none, or another libuv error code (the negative errno, as libuv's own on Unix).
// By syscall(), not writev(): in a process with threads glibc's writev marks a cancellation point around every
// call (about 30 instructions more), and no pgmux thread is ever cancelled.
ssize_t StreamConn::try_write(const uv_buf_t* bufs, unsigned count) {
  if (tcp_.get()->connect_req != nullptr) return UV_EAGAIN;  // still connecting: libuv queues it, as uv_try_write
  const int fd = tcp_.get()->io_watcher.fd;
  for (;;) {
    const auto n = static_cast<ssize_t>(
        syscall(SYS_writev, static_cast<long>(fd), reinterpret_cast<const iovec*>(bufs), static_cast<long>(count)));
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return UV_EAGAIN;
    return -errno;
  }
}

void StreamConn::queue_owned(protocol::ByteVector&& bytes, size_t from) {
  auto* write = new OwnedWrite{{}, std::move(bytes), this};
  // buf points into the same heap block: moving a vector keeps its storage.
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data() + from),
                             static_cast<unsigned>(write->bytes.size() - from));
  write->req.data = write;
  const int rc = uv_write(&write->req, stream(), &buf, 1, on_owned_written);
  if (rc != 0) {
    delete write;
    on_write_error(rc);
  }
}

void StreamConn::on_owned_written(uv_write_t* req, int status) {
  auto* write = static_cast<OwnedWrite*>(req->data);
  StreamConn* conn = write->conn;
  delete write;
  if (status < 0 && status != UV_ECANCELED && conn->open()) conn->on_write_error(status);
}

bool StreamConn::forward_from(StreamConn& source, const uv_buf_t* bufs, unsigned count) {
  if (!open() || count == 0) return true;
  if (forward_source_ != nullptr) {
    // Callers never forward while a source is pinned; treat a violation as a fatal write error, not UB.
    on_write_error(UV_EBUSY);
    return true;
  }
  for (unsigned i = 0; i < count; ++i) count_sent(bufs[i].len);
  if (tls_) return tls_forward(source, bufs, count);
  // Fast path: the kernel usually takes everything at once and nothing is pinned.
  uv_buf_t rest[16];
  unsigned rest_count = 0;
  if (write_queue_size() == 0) {
    const ssize_t n = try_write(bufs, count);
    if (n < 0 && n != UV_EAGAIN) {
      on_write_error(static_cast<int>(n));
      return true;
    }
    size_t written = n > 0 ? static_cast<size_t>(n) : 0;
    for (unsigned i = 0; i < count; ++i) {
      if (written >= bufs[i].len) {
        written -= bufs[i].len;
        continue;
      }
      rest[rest_count] = uv_buf_init(bufs[i].base + written, static_cast<unsigned>(bufs[i].len - written));
      ++rest_count;
      written = 0;
    }
    if (rest_count == 0) return true;
  } else {
    for (unsigned i = 0; i < count && i < 16; ++i) rest[rest_count++] = bufs[i];
  }
  forward_source_ = &source;
  source.pinned_ = true;
  source.stop_reading();
  // Allocated only here, where the kernel did not take everything (libuv allocates on this path too): a request
  // embedded in every connection would cost each idle client 192 bytes.
  auto* req = new uv_write_t;
  req->data = this;
  int rc = uv_write(req, stream(), rest, rest_count, on_forward_written);
  if (rc != 0) {
    delete req;
    forward_source_ = nullptr;
    source.pinned_ = false;
    on_write_error(rc);
    return true;
  }
  return false;
}

// Runs before the handle's close callback (a pending write is canceled first), so the connection is still there.
void StreamConn::on_forward_written(uv_write_t* req, int status) {
  auto* self = static_cast<StreamConn*>(req->data);
  delete req;
  self->release_forward_source();
  if (status < 0 && status != UV_ECANCELED && self->open()) self->on_write_error(status);
}

// The source's bytes are out: it may read (and compact its buffer) again, or go if it was closed meanwhile.
void StreamConn::release_forward_source() {
  StreamConn* source = forward_source_;
  forward_source_ = nullptr;
  if (!source) return;
  source->pinned_ = false;
  if (source->open()) {
    source->on_forward_done();
  } else {
    source->maybe_delete();
  }
}

// The handle closes first, so open() is false while on_closing detaches the object (what it calls may come
// back here, or try to write to this connection). libuv only queues the close: nothing is freed before the loop
// runs the close callback.
void StreamConn::close() {
  if (!open()) return;
  stop_reading();
  if (tls_) {
    tls_close();
    tls_->resume.close();
  }
  tcp_.close();
  on_closing();
}

void StreamConn::on_tcp_closed() { maybe_delete(); }

void StreamConn::maybe_delete() {
  if (tcp_.closed() && (!tls_ || tls_->resume.closed()) && !pinned_) delete this;
}

}  // namespace pgmux::proxy
