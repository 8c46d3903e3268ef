// A hashed timer wheel: O(1) to arm, re-arm and cancel, for the many same-length timeouts of a
// proxy (connect timeout, idle timeout). A TimerHook is embedded in its owner (intrusive), so
// no allocation per timer; an owner cancels its hooks in its destructor.
//
// Threading: one wheel per event loop, used only on that loop's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace balance::net {

class TimerHook {
 public:
  TimerHook() = default;
  TimerHook(const TimerHook&) = delete;
  TimerHook& operator=(const TimerHook&) = delete;
  bool armed() const { return prev_ != nullptr; }
  uint64_t deadline_ms() const { return deadline_ms_; }

 private:
  friend class TimerWheel;
  TimerHook* prev_ = nullptr;  // null when not armed
  TimerHook* next_ = nullptr;
  uint64_t deadline_ms_ = 0;
  std::function<void()> fire_;
};

class TimerWheel {
 public:
  static constexpr uint64_t kTickMs = 16;
  static constexpr unsigned kSlots = 1024;  // one turn = ~16 s; longer timers wait several turns

  explicit TimerWheel(uint64_t now_ms);
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms (or re-arms) `hook` to call `fire` at `deadline_ms` (no earlier, up to a tick later).
  void schedule(TimerHook& hook, uint64_t deadline_ms, std::function<void()> fire);
  void cancel(TimerHook& hook);
  // Fires every hook whose deadline is <= now_ms. A fired hook is disarmed before its call,
  // so the callback may re-arm it or destroy its owner's other hooks.
  void advance(uint64_t now_ms);
  // How long an event loop may sleep before the next tick that can fire (-1: nothing armed).
  int poll_timeout_ms(uint64_t now_ms) const;
  size_t armed_count() const { return armed_; }

 private:
  void link(TimerHook& hook);
  static void unlink(TimerHook& hook);

  std::vector<TimerHook> heads_;  // sentinel per slot (circular lists)
  uint64_t current_tick_;
  size_t armed_ = 0;
};

}  // namespace balance::net
