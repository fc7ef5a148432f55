#include "tests/soak/soak_driver.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <memory>
#include <sstream>
#include <stdexcept>

namespace pgmux::soak {
namespace {

constexpr size_t kFailureSamples = 20;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// One client and what epoll knows of its sockets (a socket closed by the client leaves epoll by itself).
struct Slot {
  std::unique_ptr<SoakClient> client;
  int fd = -1;
  bool fd_write = false;
  int cancel_fd = -1;
  bool cancel_write = false;
};

class EpollLoop {
 public:
  explicit EpollLoop(size_t slots) : slots_(slots), epfd_(epoll_create1(EPOLL_CLOEXEC)) {
    if (epfd_ < 0) throw std::runtime_error("epoll_create1 failed");
  }
  ~EpollLoop() { close(epfd_); }

  std::vector<Slot>& slots() { return slots_; }

  // Brings epoll in line with the client's sockets and write interest.
  void sync(size_t index) {
    Slot& s = slots_[index];
    if (!s.client || s.client->done()) {
      s.fd = s.cancel_fd = -1;
      return;
    }
    update(index * 2, s.client->fd(), s.client->wants_write(), s.fd, s.fd_write);
    update(index * 2 + 1, s.client->cancel_fd(), s.client->cancel_wants_write(), s.cancel_fd, s.cancel_write);
  }

  // Waits up to timeout_ms and hands each event to its client.
  void poll_once(int timeout_ms) {
    epoll_event events[256];
    int n = epoll_wait(epfd_, events, 256, timeout_ms);
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      Slot& s = slots_[tag / 2];
      if (!s.client || s.client->done()) continue;
      if (tag % 2 == 0) {
        if (s.fd < 0) continue;
        s.client->on_event(events[i].events);
      } else {
        if (s.cancel_fd < 0) continue;
        s.client->on_cancel_event(events[i].events);
      }
      sync(tag / 2);
    }
  }

 private:
  void update(uint64_t tag, int fd, bool want_write, int& registered, bool& registered_write) {
    if (fd != registered) {
      registered = fd;  // the old socket (if any) was closed, which removed it from epoll
      registered_write = want_write;
      if (fd < 0) return;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0u);
      ev.data.u64 = tag;
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) throw std::runtime_error("epoll_ctl ADD failed");
      return;
    }
    if (fd < 0 || want_write == registered_write) return;
    registered_write = want_write;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0u);
    ev.data.u64 = tag;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
  }

  std::vector<Slot> slots_;
  int epfd_;
};

void account(const SoakClient& client, DriverResult& result) {
  ++result.finished;
  ++result.outcomes[std::string(scenario_name(client.scenario())) + " " + client.outcome()];
  if (client.expected_outcome()) return;
  ++result.failed;
  if (result.failure_samples.size() < kFailureSamples) {
    result.failure_samples.push_back(std::string(scenario_name(client.scenario())) + ": " + client.outcome() +
                                     (client.detail().empty() ? "" : " (" + client.detail() + ")"));
  }
}

}  // namespace

const std::map<Scenario, int>& scenario_mix() {
  static const std::map<Scenario, int> mix = {
      {Scenario::Queries, 24},          {Scenario::Transaction, 10},       {Scenario::WrongPassword, 8},
      {Scenario::UnknownUser, 5},       {Scenario::UnknownDatabase, 3},    {Scenario::CloseAfterStartup, 6},
      {Scenario::CloseMidAuth, 5},      {Scenario::HalfQuery, 6},          {Scenario::CloseAfterQuery, 5},
      {Scenario::ResetMidQuery, 6},     {Scenario::CloseInTransaction, 7}, {Scenario::Cancel, 5},
      {Scenario::CloseAfterAuth, 4},    {Scenario::BogusCancel, 3},        {Scenario::ExtendedThenVanish, 3},
  };
  return mix;
}

SoakDriver::SoakDriver(DriverOptions options) : options_(std::move(options)) {
  if (options_.databases.empty()) options_.databases.push_back("app");
  int percent = 0;
  for (const auto& entry : scenario_mix()) percent += entry.second;
  if (percent != 100 || scenario_mix().size() != kScenarioCount) throw std::logic_error("scenario mix is not 100%");
}

Scenario SoakDriver::scenario_for(size_t index) const {
  int pick = static_cast<int>(splitmix64(options_.seed * 1000003u + index) % 100);
  for (const auto& [scenario, percent] : scenario_mix()) {
    if (pick < percent) return scenario;
    pick -= percent;
  }
  return Scenario::Queries;
}

DriverResult SoakDriver::run(size_t clients) {
  DriverResult result;
  const auto begin = Clock::now();
  const auto stop_starting = begin + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(options_.time_limit_s));
  const auto client_timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.client_timeout_s));
  EpollLoop loop(options_.concurrency);
  size_t active = 0;
  auto last_tick = begin;
  while (true) {
    const auto now = Clock::now();
    const bool may_start = result.started < clients && now < stop_starting;
    if (!may_start && result.started < clients) result.time_limit_hit = true;
    for (size_t i = 0; i < loop.slots().size() && may_start && result.started < clients; ++i) {
      Slot& s = loop.slots()[i];
      if (s.client) continue;
      const size_t index = next_index_++;
      ClientTarget target{options_.port, options_.user, options_.password,
                          options_.databases[index % options_.databases.size()]};
      s.client = std::make_unique<SoakClient>(scenario_for(index), target, now + client_timeout);
      ++result.started;
      ++active;
      s.client->start();
      loop.sync(i);
    }
    if (active == 0 && !may_start) break;
    loop.poll_once(5);
    const bool tick = Clock::now() - last_tick >= std::chrono::milliseconds(5);
    if (tick) last_tick = Clock::now();
    for (size_t i = 0; i < loop.slots().size(); ++i) {
      Slot& s = loop.slots()[i];
      if (!s.client) continue;
      if (tick) s.client->on_tick(last_tick);
      loop.sync(i);
      if (!s.client->done()) continue;
      account(*s.client, result);
      finished_.fetch_add(1);
      s.client.reset();
      --active;
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  return result;
}

std::string format_outcomes(const DriverResult& result) {
  std::ostringstream out;
  for (const auto& [key, count] : result.outcomes) out << "  " << key << ": " << count << "\n";
  return out.str();
}

}  // namespace pgmux::soak
