// One epoll event loop, run by one worker thread (the muduo/Redis reactor shape).
//
// Threading contract: everything here runs on the loop's own thread, except stop() and
// post(), which any thread may call. assert_in_loop_thread() checks that in debug builds.
//
// Lifetime: a Watch is embedded in its owner; the owner removes it (remove()), or closes its
// descriptor through close(), before it dies.
// Owners never delete themselves inside a callback: they ask defer() for a task that runs once
// the current batch of events is done, so no event of the batch can reach a dead owner.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "net/fd.h"
#include "net/timer_wheel.h"

namespace balance::net {

// Receives readiness events for one descriptor.
class Watch {
 public:
  virtual void on_events(uint32_t events) = 0;

 protected:
  ~Watch() = default;
};

class EventLoop {
 public:
  // Check error() before use: creating the epoll instance or the wake-up eventfd can fail (out
  // of descriptors at start-up).
  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // 0, or the errno that kept the loop from being made: it must not be run then.
  int error() const { return error_; }

  // Watches `fd`. False (errno set) when the kernel refuses (ENOMEM, or ENOSPC at
  // fs.epoll.max_user_watches): the caller gives up that socket, the process goes on.
  [[nodiscard]] bool add(int fd, uint32_t events, Watch& watch);
  // Aims the watching of `fd` (added before) at `watch`, for `events`: one EPOLL_CTL_MOD, where a
  // remove() and an add() cost about four times as much (bench/proto/kernel_costs.cpp). Events
  // already harvested keep the watch they were harvested for; later ones, read afresh from the
  // socket, go to `watch`. False (errno set) when the kernel refuses.
  [[nodiscard]] bool retarget(int fd, uint32_t events, Watch& watch);
  // Leaves `fd` (added before) in the epoll set with its events going to no watch: dropped (an
  // idle socket's EPOLLHUP, once, edge-triggered), until retarget() aims them again.
  [[nodiscard]] bool park(int fd);
  void remove(int fd);
  // Closes a watched descriptor. The close alone takes it out of epoll, which saves a syscall,
  // except while the fork fence is up: then it is removed first.
  void close(Fd& fd);

  // The fork fence (a count: each raise is lowered once). epoll watches open files, not
  // descriptor numbers (epoll(7), Q6): between a fork and the child's exec, the child holds a
  // copy of every descriptor, so a socket closed here meanwhile stays open there, and its
  // events would go on reaching a watch whose owner is gone. Whoever forks raises the fence on
  // every loop (on the loop's thread, e.g. through post()) and waits until each has it up, and
  // lowers it once the child has exec'd or exited.
  void raise_fork_fence() { ++fork_fence_; }
  void lower_fork_fence() { --fork_fence_; }

  // Runs until stop(); then returns.
  void run();
  // Any thread: makes run() return after its current batch.
  void stop();

  // Runs `task` on this thread once the current batch of events has been handled.
  void defer(std::function<void()> task);
  // Any thread: runs `task` on the loop's thread soon (wakes the loop), between two batches of
  // events (so it may destroy watches).
  void post(std::function<void()> task);

  TimerWheel& timers() { return timers_; }
  // Monotonic milliseconds, refreshed once per batch (cheap enough to call per event).
  uint64_t now_ms() const { return now_ms_; }
  static uint64_t clock_ms();

  void assert_in_loop_thread() const;

 private:
  // Drains the eventfd that post() and stop() write; run() then sees stopping_ and the tasks.
  class Waker final : public Watch {
   public:
    explicit Waker(EventLoop& loop) : loop_(loop) {}
    void on_events(uint32_t events) override;

   private:
    EventLoop& loop_;
  };

  // epoll_ctl(op) of `fd` for `events`, reported to `watch` (null: to no one).
  bool control(int op, int fd, uint32_t events, Watch* watch);
  void run_deferred();
  void run_posted();
  void wake();

  Fd epoll_;
  Fd wake_fd_;
  std::atomic<bool> stopping_{false};
  uint64_t now_ms_;
  TimerWheel timers_;
  Waker waker_;
  std::vector<std::function<void()>> deferred_;
  std::mutex posted_mutex_;  // control path only: taken only when something was posted
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> has_posted_{false};
  std::thread::id thread_id_;
  int error_ = 0;
  unsigned fork_fence_ = 0;  // loop thread only
};

}  // namespace balance::net
