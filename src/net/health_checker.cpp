#include "net/health_checker.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstring>

#include "log/log.h"
#include "net/proxy_protocol.h"
#include "net/sockets.h"

namespace balance::net {

// One channel's checks: a connect per interval, and the up/down verdict with its hysteresis.
class HealthChecker::Probe final : public Watch {
 public:
  Probe(HealthChecker& hc, uint32_t g, uint32_t c) : hc_(hc), group_(g), channel_(c) {}
  ~Probe() {
    hc_.loop_.timers().cancel(period_);
    hc_.loop_.timers().cancel(timeout_);
    finish_connect();
  }

  // Arms the first check at `first_ms`, then one per interval.
  void schedule(uint64_t first_ms) {
    hc_.loop_.timers().schedule(period_, first_ms, [this] { tick(); });
  }

  void on_events(uint32_t events) override {
    if (!fd_ || !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    const int err = socket_error(fd_.get());
    const bool connected = err == 0 && (events & EPOLLOUT);
    if (connected) greet(fd_.get());
    record(connected ? 0 : (err ? err : ECONNREFUSED));
  }

 private:
  core::Channel& channel() { return hc_.table_.groups[group_].channels[channel_]; }

  void tick() {
    const uint64_t due = period_.deadline_ms();  // when this check was due (a fired hook keeps it)
    const uint64_t interval = uint64_t{hc_.config_.check_interval_s} * 1000u;
    hc_.loop_.timers().schedule(period_, hc_.loop_.now_ms() + interval, [this] { tick(); });
    if (channel_ >= hc_.table_.channel_count(group_)) {
      retarget(core::Endpoint{});  // no such channel any more (the table was written anew): no check
      return;
    }
    const core::Endpoint address = channel().endpoint();
    if (address != target_) retarget(address);
    // The previous check's timeout falls due with this check (-t a multiple of the interval):
    // it timed out, and this check goes ahead, rather than being skipped for it.
    if (fd_ && timeout_.deadline_ms() <= due) record(ETIMEDOUT);
    if (fd_) return;  // the previous check is still waiting for its timeout
    ConnectResult r = start_connect(address, hc_.config_.out_bind);
    if (r.status == ConnectStatus::Failed && is_local_resource_error(r.error)) {
      hc_.note_starved(r.error);  // out of resources here: no verdict on the channel this round
      return;
    }
    hc_.starved_ = false;
    if (r.status != ConnectStatus::InProgress) {
      if (r.status == ConnectStatus::Connected) greet(r.fd.get());
      record(r.status == ConnectStatus::Connected ? 0 : r.error);
      return;
    }
    fd_ = std::move(r.fd);
    if (!hc_.loop_.add(fd_.get(), EPOLLOUT | EPOLLET, *this)) {
      hc_.note_starved(errno);
      fd_.reset();
      return;
    }
    const uint64_t deadline = hc_.loop_.now_ms() + uint64_t{hc_.config_.connect_timeout_s} * 1000u;
    hc_.loop_.timers().schedule(timeout_, deadline, [this] { record(ETIMEDOUT); });
  }

  // With --proxy-protocol a backend expects the header first on every connection: a check
  // sends the one for a connection of balance's own (HAProxy does the same for servers with
  // send-proxy), so the backend sees a well-formed connection and no broken header in its log.
  // A fresh socket takes these few bytes at once; a check that cannot send them still counts.
  void greet(int fd) {
    const auto pp = hc_.config_.proxy_protocol;
    if (pp == cli::ProxyProtocol::None) return;
    const std::string header = pp == cli::ProxyProtocol::V1 ? proxy_header_local_v1() : proxy_header_local_v2();
    [[maybe_unused]] const ssize_t n = ::send(fd, header.data(), header.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  void finish_connect() {
    hc_.loop_.timers().cancel(timeout_);
    if (fd_) {
      hc_.loop_.remove(fd_.get());
      fd_.reset();
    }
  }

  // The channel has a new address (`assign`; an empty one when the channel is gone): a check of
  // the old one in flight is dropped, and the checks in a row counted so far were of the old one.
  // The health stays as it is until --rise or --fall checks of the new address change it.
  void retarget(const core::Endpoint& address) {
    finish_connect();
    target_ = address;
    successes_ = 0;
    failures_ = 0;
  }

  // One check's outcome: 0 = the channel answered, otherwise why it did not.
  void record(int error) {
    finish_connect();
    // Reassigned while the check was under way: its outcome says nothing about the new address.
    if (channel().endpoint() != target_) return;
    const bool up = channel().health.load(std::memory_order_relaxed) == static_cast<uint32_t>(core::Health::Up);
    if (error == 0) {
      failures_ = 0;
      if (++successes_ >= hc_.config_.rise && !up) set(core::Health::Up, "up", successes_, "successful");
    } else {
      successes_ = 0;
      last_error_ = error;
      if (++failures_ >= hc_.config_.fall && up) set(core::Health::Down, "down", failures_, "failed");
    }
  }

  void set(core::Health h, const char* word, unsigned count, const char* kind) {
    channel().health.store(static_cast<uint32_t>(h), std::memory_order_relaxed);
    const std::string addr = channel().endpoint().to_string();
    if (h == core::Health::Down) {
      log::write(log::Level::Warning, "health: group %u channel %u (%s) is %s after %u %s checks (%s)", group_, channel_,
                 addr.c_str(), word, count, kind, std::strerror(last_error_));
    } else {
      log::write(log::Level::Notice, "health: group %u channel %u (%s) is %s after %u %s checks", group_, channel_,
                 addr.c_str(), word, count, kind);
    }
  }

  HealthChecker& hc_;
  uint32_t group_;
  uint32_t channel_;
  core::Endpoint target_;  // the address being checked: the counts below are about it
  Fd fd_;  // the check in flight
  TimerHook period_;
  TimerHook timeout_;
  unsigned successes_ = 0;
  unsigned failures_ = 0;
  int last_error_ = 0;
};

// Once per spell of local shortage (not per channel and interval): the checks that cannot be
// made give no verdict, so a healthy channel is never marked down because balance itself ran out
// of descriptors; the log says why health is not being updated meanwhile.
void HealthChecker::note_starved(int error) {
  if (starved_) return;
  starved_ = true;
  log::write(log::Level::Warning, "health: cannot make checks (%s): no verdict on the channels until it can",
             std::strerror(error));
}

HealthChecker::HealthChecker(core::Table& table, const cli::Config& config)
    : table_(table), config_(config), probes_(core::kMaxGroups * core::kMaxChannels) {
  table_.header.flags.fetch_or(core::kFlagChecks);
}

HealthChecker::~HealthChecker() { stop_and_join(); }

void HealthChecker::start() {
  thread_ = std::thread([this] { run(); });
  ::pthread_setname_np(thread_.native_handle(), "health checks");
}

void HealthChecker::stop_and_join() {
  if (!thread_.joinable()) return;
  loop_.stop();
  thread_.join();
}

void HealthChecker::run() {
  scan();
  loop_.run();
  probes_.clear();
  loop_.timers().cancel(scan_timer_);
}

// Gives every channel that has no probe yet its own, its first check spread over one interval
// by the channel's position, so that checks do not all go out at once.
void HealthChecker::scan() {
  const uint64_t interval = uint64_t{config_.check_interval_s} * 1000u;
  const uint64_t slots = core::kMaxGroups * core::kMaxChannels;
  for (uint32_t g = 0; g < core::kMaxGroups; ++g) {
    const uint32_t n = table_.channel_count(g);
    for (uint32_t c = 0; c < n; ++c) {
      auto& probe = probes_[g * core::kMaxChannels + c];
      if (probe) continue;
      probe = std::make_unique<Probe>(*this, g, c);
      const uint64_t spread = interval * ((g * 7919u + c * 131u) % slots) / slots;
      probe->schedule(loop_.now_ms() + spread);
    }
  }
  loop_.timers().schedule(scan_timer_, loop_.now_ms() + interval, [this] { scan(); });
}

}  // namespace balance::net
