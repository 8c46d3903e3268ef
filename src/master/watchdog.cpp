#include "master/watchdog.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <climits>

#include "log/log.h"

namespace balance::master {

Watchdog::Watchdog() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) period_ms_ = std::max<uint64_t>(usec / 1000, 2);
  next_ms_ = net::EventLoop::clock_ms();
}

int Watchdog::wait_ms() const {
  if (!enabled()) return -1;
  const uint64_t now = net::EventLoop::clock_ms();
  return next_ms_ <= now ? 0 : static_cast<int>(std::min<uint64_t>(next_ms_ - now, INT_MAX));
}

void Watchdog::tick() {
  const uint64_t now = net::EventLoop::clock_ms();
  if (!enabled() || now < next_ms_) return;
  next_ms_ = now + period_ms_ / 2;
  if (answered_->load(std::memory_order_acquire) < asked_) {
    if (!silent_) {
      silent_ = true;
      log::write(log::Level::Error,
                 "an event loop has not answered for %llu ms: no watchdog ping to systemd until it does",
                 static_cast<unsigned long long>(now - asked_ms_));
    }
    return;
  }
  if (silent_) {
    silent_ = false;
    log::write(log::Level::Notice, "every event loop answers again: watchdog pings to systemd resume");
  }
  sd_notify(0, "WATCHDOG=1");
  for (net::EventLoop* loop : loops_) {
    loop->post([answered = answered_] { answered->fetch_add(1, std::memory_order_release); });
  }
  asked_ += loops_.size();
  asked_ms_ = now;
}

}  // namespace balance::master
