#include "proxy/server.hpp"

#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <vector>

#include "proxy/listen_socket.hpp"
#include "proxy/log.hpp"
#include "proxy/prober.hpp"
#include "proxy/shared_state.hpp"
#include "proxy/worker.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {
namespace {

struct ControlLoop {
  uv_loop_t* loop = nullptr;
  uv_signal_t sigint, sigterm, sighup;
  uv_async_t worker_exited;
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<Prober> prober;
  std::atomic<int> running{0};
  bool stopping = false;

  void stop_workers(bool graceful) {
    LOG_INFO("%s: %s", graceful ? "SIGTERM" : "SIGINT",
             graceful ? "graceful shutdown, waiting for sessions to finish" : "closing all connections now");
    stopping = true;
    for (auto& worker : workers) worker->shutdown(graceful);
  }
  void close_handles() {
    if (prober) prober->stop();
    for (uv_signal_t* s : {&sigint, &sigterm, &sighup}) uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&worker_exited), nullptr);
  }
};

void on_signal(uv_signal_t* handle, int signum) {
  auto* control = static_cast<ControlLoop*>(handle->data);
  if (signum == SIGHUP) {
    LOG_WARN("SIGHUP: live reload is not implemented yet; restart pgmux to apply a new config");
    return;
  }
  control->stop_workers(signum == SIGTERM);
}

void on_worker_exited(uv_async_t* handle) {
  auto* control = static_cast<ControlLoop*>(handle->data);
  if (control->running.load() == 0) control->close_handles();
}

}  // namespace

int run_server(std::shared_ptr<const conf::Config> config) {
  signal(SIGPIPE, SIG_IGN);
  const int worker_count = config->effective_workers();

  // Bind everything before starting anything, so a port in use is one clear error at startup.
  std::vector<std::vector<int>> fds(static_cast<size_t>(worker_count));
  for (const auto& listener : config->listeners) {
    std::string busy;
    if (!port_is_free(listener, &busy)) {
      LOG_ERROR("%s", busy.c_str());
      return 1;
    }
  }
  for (const auto& listener : config->listeners) {
    for (int w = 0; w < worker_count; ++w) {
      std::string error;
      int fd = open_listen_socket(listener, &error);
      if (fd < 0 || listen(fd, 511) != 0) {
        LOG_ERROR("%s", error.empty() ? "listen failed" : error.c_str());
        for (auto& list : fds)
          for (int open_fd : list) close(open_fd);
        if (fd >= 0) close(fd);
        return 1;
      }
      fds[static_cast<size_t>(w)].push_back(fd);
    }
  }

  ControlLoop control;
  control.loop = uv_default_loop();
  // Roles are discovered, not configured: the prober's views reach every worker (DESIGN.md §5).
  SharedState* shared_ptr_for_prober = nullptr;
  control.prober = std::make_unique<Prober>(control.loop, *config, [&](Prober::View view) {
    if (!shared_ptr_for_prober) return;
    shared_ptr_for_prober->view.store(view);
    for (auto& worker : control.workers) worker->publish_view(view);
  });
  SharedState shared(config, control.prober->view());
  shared_ptr_for_prober = &shared;
  uv_async_init(control.loop, &control.worker_exited, on_worker_exited);
  control.worker_exited.data = &control;
  int signums[] = {SIGINT, SIGTERM, SIGHUP};
  uv_signal_t* handles[] = {&control.sigint, &control.sigterm, &control.sighup};
  for (int i = 0; i < 3; ++i) {
    uv_signal_init(control.loop, handles[i]);
    handles[i]->data = &control;
    uv_signal_start(handles[i], on_signal, signums[i]);
  }

  control.running = worker_count;
  for (int w = 0; w < worker_count; ++w) {
    control.workers.push_back(std::make_unique<Worker>(w, shared, std::move(fds[static_cast<size_t>(w)]), [&control] {
      control.running.fetch_sub(1);
      uv_async_send(&control.worker_exited);
    }));
  }
  for (auto& worker : control.workers) shared.workers.push_back(worker.get());
  for (auto& worker : control.workers) worker->start();
  control.prober->start();
  for (const auto& listener : config->listeners) {
    LOG_INFO("pgmux %s listening on %s:%u with %d workers", PGMUX_VERSION, listener.host.c_str(),
             static_cast<unsigned>(listener.port), worker_count);
  }

  uv_run(control.loop, UV_RUN_DEFAULT);
  for (auto& worker : control.workers) worker->join();
  control.workers.clear();
  control.prober.reset();
  uv_run(control.loop, UV_RUN_DEFAULT);  // let the prober's handles finish closing
  uv_loop_close(control.loop);
  LOG_INFO("pgmux stopped; clients pinned to a server (transaction pooling), by reason: %s",
           shared.pins.summary().c_str());
  return 0;
}

}  // namespace pgmux::proxy
