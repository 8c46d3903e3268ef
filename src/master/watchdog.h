// systemd's watchdog (WatchdogSec= in the unit): the master sends WATCHDOG=1 every half period,
// but only while every event loop (each worker's, the health checker's) answers a ping posted to
// it. A thread stuck in a loop or a lock stops the pings, and systemd restarts the service, the
// way HAProxy's own watchdog ends a process with a stuck thread. Without WATCHDOG_USEC in the
// environment (or with a WATCHDOG_PID of another process), it does nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "net/loop.h"

namespace balance::master {

class Watchdog {
 public:
  // Reads the period from the environment systemd gave this process.
  Watchdog();

  bool enabled() const { return period_ms_ != 0; }
  // The loops to ping; they must run until stop() (the pings hold no reference to this object).
  void watch(std::vector<net::EventLoop*> loops) { loops_ = std::move(loops); }
  // No more pings (this process is no longer the service's main process, or it stops).
  void stop() { period_ms_ = 0; }

  // How long the master may wait before the next tick(): -1 (no limit) without a watchdog.
  int wait_ms() const;
  // When due: WATCHDOG=1 if every loop answered the last ping (and a ping to each again);
  // otherwise nothing for systemd, and one line in the log until they answer again.
  void tick();

 private:
  uint64_t period_ms_ = 0;
  uint64_t next_ms_ = 0;  // when the next tick is due
  std::vector<net::EventLoop*> loops_;
  std::shared_ptr<std::atomic<uint64_t>> answered_ = std::make_shared<std::atomic<uint64_t>>(0);
  uint64_t asked_ = 0;         // pings posted so far
  uint64_t asked_ms_ = 0;      // when the last ones were posted
  bool silent_ = false;        // a ping went unanswered (said in the log once)
};

}  // namespace balance::master
