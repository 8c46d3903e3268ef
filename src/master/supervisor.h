// The master thread's wait: for stop signals, and, while stopping, for the workers to report
// that they stopped accepting and that their last connection ended. Nothing here sleeps for a
// fixed time: it waits on a signalfd and an eventfd, bounded by the grace period.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "net/fd.h"

namespace balance::master {

enum class Event {
  Stop,     // SIGTERM/SIGQUIT, or SIGINT in the background: stop gracefully
  StopNow,  // SIGINT in the foreground, or a second stop signal while stopping
  Upgrade,  // SIGUSR2
  Workers,  // a worker reported progress (see counters)
  Timeout,
};

// Signals that would end the process by default but mean nothing to balance (SIGPIPE, SIGUSR1,
// SIGALRM..., SIGSTKFLT, SIGXFSZ, the real-time ones): ignored from the start, so that a stray one cannot
// cut every connection and leave the control segment behind.
void ignore_stray_signals();

class Supervisor {
 public:
  // Blocks the signals it handles in the calling thread (and so in threads started later).
  explicit Supervisor(bool foreground);

  // Waits for the next event, at most `timeout_ms` (-1: no limit). SIGHUP is ignored.
  Event wait(int timeout_ms);

  // For workers (any thread): one more worker stopped accepting / has no connection left.
  std::function<void()> stopped_accepting_callback();
  std::function<void()> drained_callback();
  unsigned stopped_accepting() const { return stopped_accepting_.load(); }
  unsigned drained() const { return drained_.load(); }
  // The eventfd that wakes wait() (Event::Workers), for a signal handler to write 1 to.
  int wake_fd() const { return event_fd_.get(); }
  // Readable while a signal waits for wait(): for a wait elsewhere that must heed them.
  int signal_fd() const { return signal_fd_.get(); }

 private:
  void notify();

  bool foreground_;
  bool stopping_ = false;
  net::Fd signal_fd_;
  net::Fd event_fd_;
  std::atomic<unsigned> stopped_accepting_{0};
  std::atomic<unsigned> drained_{0};
};

}  // namespace balance::master
