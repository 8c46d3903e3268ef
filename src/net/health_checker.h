// Active health checks (--check SECONDS): every channel is probed with a TCP connect once per
// interval, the probes of different channels spread over the interval rather than all at once.
// --rise successes in a row mark a down channel up, --fall failures in a row mark an up channel
// down. Health is separate from the admin state (enable/disable): the selection policy skips a
// channel that is down or disabled. Channels added at runtime (`create`) are picked up; a
// channel given a new address (`assign`) is checked at its new address from its next check on,
// and a check of the old address still under way counts for nothing. A check that cannot be
// made for lack of a resource of this host (descriptors, memory, local ports) is no verdict on
// the channel.
//
// Threading: its own thread and event loop; it writes only Channel::health (an atomic).
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "cli/config.h"
#include "core/table.h"
#include "net/loop.h"

namespace balance::net {

class HealthChecker {
 public:
  HealthChecker(core::Table& table, const cli::Config& config);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // 0, or why the checker cannot run (its event loop could not be made): do not start() it then.
  int error() const { return loop_.error(); }
  void start();
  void stop_and_join();
  // Any thread, for post() only (the watchdog's pings).
  EventLoop& loop() { return loop_; }

 private:
  class Probe;
  void run();
  void scan();  // creates probes for channels that appeared
  void note_starved(int error);  // a check could not be made for lack of a local resource

  core::Table& table_;
  const cli::Config& config_;
  EventLoop loop_;
  std::vector<std::unique_ptr<Probe>> probes_;  // index g * kMaxChannels + c
  TimerHook scan_timer_;
  bool starved_ = false;  // the last check that was tried could not be made (logged once)
  std::thread thread_;
};

}  // namespace balance::net
