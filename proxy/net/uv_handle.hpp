// The one wrapper for libuv handles (DESIGN.md §3.8). libuv uses a handle's memory from uv_*_init until the
// handle's close callback has run, so the wrapper embeds the handle, points handle->data at itself, can be
// neither copied nor moved, and closes at most once: Unused → Init → Closing → Closed. Its owner hears of the
// end from the close callback, and only from then on may the memory the handle lives in be freed.
//
// Two ways to own one:
// - embedded in an object that lives until the close callback: the owner is told through on_closed (and may
//   delete itself there), or the owner outlives the loop's run and needs no word;
// - UvHandlePtr, for a handle that may outlive its owner: dropping the pointer closes the handle, and the
//   wrapper frees itself in its close callback without calling back into the owner.
#pragma once
#include <uv.h>

#include <cassert>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace pgmux::proxy {

namespace uv_detail {
// uv_<type>_init for each handle type pgmux uses, with the arguments it takes besides loop and handle.
inline int init_handle(uv_loop_t* loop, uv_tcp_t* handle) { return uv_tcp_init(loop, handle); }
inline int init_handle(uv_loop_t* loop, uv_timer_t* handle) { return uv_timer_init(loop, handle); }
inline int init_handle(uv_loop_t* loop, uv_signal_t* handle) { return uv_signal_init(loop, handle); }
inline int init_handle(uv_loop_t* loop, uv_async_t* handle, uv_async_cb callback) {
  return uv_async_init(loop, handle, callback);
}
inline int init_handle(uv_loop_t* loop, uv_poll_t* handle, int fd) { return uv_poll_init(loop, handle, fd); }
}  // namespace uv_detail

template <typename Handle, typename Owner>
class UvHandle {
 public:
  enum class Life : uint8_t { Unused, Init, Closing, Closed };
  using OnClosed = void (Owner::*)();

  // on_closed runs from the close callback, once, as the last thing the wrapper does: it may delete the owner
  // and this wrapper with it.
  explicit UvHandle(Owner* owner, OnClosed on_closed = nullptr) : owner_(owner), on_closed_(on_closed) {}
  // Freeing a handle libuv still holds would leave the loop pointing into freed memory.
  ~UvHandle() { assert(life_ == Life::Unused || life_ == Life::Closed); }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  // uv_<type>_init; extra arguments are an async's callback or a poll's fd. On failure the wrapper stays Unused.
  template <typename... Extra>
  int init(uv_loop_t* loop, Extra... extra) {
    assert(life_ == Life::Unused);
    const int rc = uv_detail::init_handle(loop, &handle_, extra...);
    if (rc == 0) {
      handle_.data = this;
      life_ = Life::Init;
    }
    return rc;
  }

  Handle* get() { return &handle_; }
  const Handle* get() const { return &handle_; }
  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&handle_); }
  uv_stream_t* stream()
    requires std::is_same_v<Handle, uv_tcp_t>
  {
    return reinterpret_cast<uv_stream_t*>(&handle_);
  }
  uv_loop_t* loop() const { return handle_.loop; }
  Life life() const { return life_; }
  bool open() const { return life_ == Life::Init; }
  bool closed() const { return life_ == Life::Closed; }

  // Starts closing; libuv calls no other callback of the handle from now on. Once libuv is done with the handle,
  // the wrapper is Closed and tells its owner. Closing again, or closing a handle never initialised, does nothing
  // more (the latter becomes Closed at once, with no word to the owner: there was nothing to wait for).
  void close() {
    if (life_ == Life::Unused) life_ = Life::Closed;
    if (life_ != Life::Init) return;
    life_ = Life::Closing;
    uv_close(handle(), on_close);
  }

  // For a wrapper made with new whose owner is done with it: closes it and frees it once closed, without
  // calling back into the owner. UvHandlePtr calls this; so may a wrapper that owns itself.
  void close_and_free() {
    owner_ = nullptr;
    if (life_ == Life::Unused || life_ == Life::Closed) {
      delete this;
      return;
    }
    frees_itself_ = true;
    close();
  }

  // The owner, from inside one of the handle's callbacks (any view of the handle: its own type, uv_handle_t*,
  // uv_stream_t*, a request's ->handle).
  template <typename AnyHandle>
  static Owner* owner_of(const AnyHandle* handle) {
    return static_cast<UvHandle*>(reinterpret_cast<const uv_handle_t*>(handle)->data)->owner_;
  }

 private:
  static void on_close(uv_handle_t* handle) {
    auto* self = static_cast<UvHandle*>(handle->data);
    self->life_ = Life::Closed;
    if (self->frees_itself_) {
      delete self;
      return;
    }
    if (self->owner_ != nullptr && self->on_closed_ != nullptr) (self->owner_->*self->on_closed_)();
  }

  Handle handle_{};
  Owner* owner_;
  OnClosed on_closed_;
  Life life_ = Life::Unused;
  bool frees_itself_ = false;
};

template <typename Owner>
using UvTcp = UvHandle<uv_tcp_t, Owner>;
template <typename Owner>
using UvTimer = UvHandle<uv_timer_t, Owner>;
template <typename Owner>
using UvAsync = UvHandle<uv_async_t, Owner>;
template <typename Owner>
using UvSignal = UvHandle<uv_signal_t, Owner>;
template <typename Owner>
using UvPoll = UvHandle<uv_poll_t, Owner>;

struct UvHandleCloser {
  template <typename Handle, typename Owner>
  void operator()(UvHandle<Handle, Owner>* handle) const {
    handle->close_and_free();
  }
};

// A heap wrapper that may outlive its owner: reset or destruction closes the handle; the memory goes in the
// close callback.
template <typename Handle, typename Owner>
using UvHandlePtr = std::unique_ptr<UvHandle<Handle, Owner>, UvHandleCloser>;

template <typename Handle, typename Owner>
UvHandlePtr<Handle, Owner> make_uv_handle(Owner* owner) {
  return UvHandlePtr<Handle, Owner>(new UvHandle<Handle, Owner>(owner));
}

}  // namespace pgmux::proxy
