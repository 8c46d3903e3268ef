#include "net/timer_wheel.h"

#include <utility>

namespace balance::net {

TimerWheel::TimerWheel(uint64_t now_ms) : heads_(kSlots), current_tick_(now_ms / kTickMs) {
  for (auto& h : heads_) h.prev_ = h.next_ = &h;
}

TimerWheel::~TimerWheel() {
  for (auto& head : heads_) {
    while (head.next_ != &head) unlink(*head.next_);
  }
}

void TimerWheel::link(TimerHook& hook) {
  uint64_t tick = hook.deadline_ms_ / kTickMs;
  if (tick < current_tick_) tick = current_tick_;
  TimerHook& head = heads_[tick % kSlots];
  hook.prev_ = head.prev_;
  hook.next_ = &head;
  head.prev_->next_ = &hook;
  head.prev_ = &hook;
}

void TimerWheel::unlink(TimerHook& hook) {
  hook.prev_->next_ = hook.next_;
  hook.next_->prev_ = hook.prev_;
  hook.prev_ = hook.next_ = nullptr;
}

void TimerWheel::schedule(TimerHook& hook, uint64_t deadline_ms, std::function<void()> fire) {
  if (hook.armed()) {
    unlink(hook);
    --armed_;
  }
  hook.deadline_ms_ = deadline_ms;
  hook.fire_ = std::move(fire);
  link(hook);
  ++armed_;
}

void TimerWheel::cancel(TimerHook& hook) {
  if (!hook.armed()) return;
  unlink(hook);
  --armed_;
}

void TimerWheel::advance(uint64_t now_ms) {
  const uint64_t target = now_ms / kTickMs;
  // Past a full turn every slot is visited once; later turns' hooks stay where they are.
  const uint64_t first = target - current_tick_ >= kSlots ? target - kSlots + 1 : current_tick_;
  for (uint64_t tick = first; tick <= target && armed_ > 0; ++tick) {
    TimerHook& head = heads_[tick % kSlots];
    // Detach the due hooks first: callbacks may arm or cancel other hooks of this slot.
    TimerHook due;
    due.prev_ = due.next_ = &due;
    for (TimerHook* h = head.next_; h != &head;) {
      TimerHook* next = h->next_;
      if (h->deadline_ms_ <= now_ms) {
        unlink(*h);
        h->prev_ = due.prev_;
        h->next_ = &due;
        due.prev_->next_ = h;
        due.prev_ = h;
      }
      h = next;
    }
    while (due.next_ != &due) {
      TimerHook* h = due.next_;
      unlink(*h);
      --armed_;
      auto fire = std::move(h->fire_);
      fire();  // may destroy *h's owner: h is not touched after this
    }
  }
  current_tick_ = target;
}

int TimerWheel::poll_timeout_ms(uint64_t now_ms) const {
  if (armed_ == 0) return -1;
  const uint64_t next_tick_ms = (now_ms / kTickMs + 1) * kTickMs;
  return static_cast<int>(next_tick_ms - now_ms);
}

}  // namespace balance::net
