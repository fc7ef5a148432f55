// UvHandle (proxy/net/uv_handle.hpp) on a real libuv loop: closing is idempotent, the owner hears of the close
// once and only from the loop, in the order the handles were closed, and heap wrappers free themselves.
#include "proxy/net/uv_handle.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using pgmux::proxy::make_uv_handle;
using pgmux::proxy::UvAsync;
using pgmux::proxy::UvHandlePtr;
using pgmux::proxy::UvTcp;
using pgmux::proxy::UvTimer;

namespace {

struct Loop {
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);  // every handle was closed
  }
  void run() { uv_run(&loop, UV_RUN_DEFAULT); }
  uv_loop_t loop;
};

// Records what happened to it; its handles tell it of their close.
struct Owner {
  void on_a_closed() { events.push_back("a closed" + std::string(a.closed() ? "" : " (not Closed yet)")); }
  void on_b_closed() { events.push_back("b closed"); }
  static void on_timer(uv_timer_t* handle) {
    Owner* self = UvTimer<Owner>::owner_of(handle);
    self->events.push_back("fired");
    self->a.close();  // from the handle's own callback
    self->a.close();
  }

  std::vector<std::string> events;
  UvTimer<Owner> a{this, &Owner::on_a_closed};
  UvTimer<Owner> b{this, &Owner::on_b_closed};
};

// Deletes itself when its handle has closed, as StreamConn and the HTTP connections do.
struct SelfDeleting {
  explicit SelfDeleting(int* deleted) : deleted_count(deleted) {}
  ~SelfDeleting() { ++*deleted_count; }
  void on_closed() { delete this; }
  int* deleted_count;
  UvTcp<SelfDeleting> tcp{this, &SelfDeleting::on_closed};
};

// Drops its handles before they have closed.
struct Gone {
  static void on_async(uv_async_t*) { ++calls; }
  static inline int calls = 0;
};

}  // namespace

TEST_CASE("uv handle: states, and closing twice tells the owner once, from the loop") {
  Loop loop;
  Owner owner;
  CHECK(owner.a.life() == UvTimer<Owner>::Life::Unused);
  REQUIRE(owner.a.init(&loop.loop) == 0);
  REQUIRE(owner.b.init(&loop.loop) == 0);
  CHECK(owner.a.open());
  CHECK(owner.a.get()->data == &owner.a);
  CHECK(UvTimer<Owner>::owner_of(owner.a.get()) == &owner);
  CHECK(UvTimer<Owner>::owner_of(owner.a.handle()) == &owner);

  owner.a.close();
  CHECK(owner.a.life() == UvTimer<Owner>::Life::Closing);
  owner.a.close();
  CHECK(owner.events.empty());  // never from inside close(): the owner may be in the middle of something
  loop.run();
  CHECK(owner.events == std::vector<std::string>{"a closed"});  // and the owner sees the wrapper Closed
  CHECK(owner.a.closed());
  owner.a.close();  // after Closed, too
  owner.b.close();
  loop.run();
  CHECK(owner.events == std::vector<std::string>{"a closed", "b closed"});
}

TEST_CASE("uv handle: after close, the owner hears of the close and of nothing else") {
  Loop loop;
  Owner owner;
  REQUIRE(owner.a.init(&loop.loop) == 0);
  REQUIRE(owner.b.init(&loop.loop) == 0);
  uv_timer_start(owner.a.get(), Owner::on_timer, 0, 0);  // due at once
  owner.b.close();
  owner.a.close();  // before the loop ran it: the timer never fires
  loop.run();
  // Both, once each; libuv picks the order (it runs close callbacks newest first).
  std::sort(owner.events.begin(), owner.events.end());
  CHECK(owner.events == std::vector<std::string>{"a closed", "b closed"});
}

TEST_CASE("uv handle: a timer closed from its own callback") {
  Loop loop;
  Owner owner;
  REQUIRE(owner.a.init(&loop.loop) == 0);
  REQUIRE(owner.b.init(&loop.loop) == 0);
  uv_timer_start(owner.a.get(), Owner::on_timer, 0, 1);  // repeating: only the close stops it
  loop.run();  // returns: the closed timer keeps the loop alive no longer
  CHECK(owner.events == std::vector<std::string>{"fired", "a closed"});
  owner.b.close();
  loop.run();
}

TEST_CASE("uv handle: a handle never initialised closes at once, without a word to its owner") {
  Loop loop;
  Owner owner;
  owner.a.close();
  CHECK(owner.a.closed());
  loop.run();
  CHECK(owner.events.empty());
}

TEST_CASE("uv handle: an owner may delete itself in the close callback") {
  Loop loop;
  int deleted = 0;
  auto* conn = new SelfDeleting(&deleted);
  REQUIRE(conn->tcp.init(&loop.loop) == 0);
  conn->tcp.close();
  conn->tcp.close();
  CHECK(deleted == 0);
  loop.run();
  CHECK(deleted == 1);
}

TEST_CASE("uv handle: a heap wrapper outlives its owner and frees itself once closed") {
  Loop loop;
  Gone gone;
  {
    UvHandlePtr<uv_async_t, Gone> async = make_uv_handle<uv_async_t>(&gone);
    REQUIRE(async->init(&loop.loop, Gone::on_async) == 0);
    uv_async_send(async->get());
  }  // dropped: closing, the pending wake-up is never delivered
  loop.run();  // the close callback frees it (valgrind or ASan would report it otherwise)
  CHECK(Gone::calls == 0);

  UvHandlePtr<uv_timer_t, Gone> unused = make_uv_handle<uv_timer_t>(&gone);
  unused.reset();  // never initialised: freed at once
}
