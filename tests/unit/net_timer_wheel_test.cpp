// The timer wheel fires each hook once, at or just after its deadline, never early, and
// tolerates re-arming, cancelling and destroying hooks from inside callbacks.
#include "net/timer_wheel.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace balance::net {
namespace {

// A hook fires exactly once, not before its deadline and within one tick after it.
TEST(TimerWheel, FiresOnceAtDeadline) {
  TimerWheel wheel(1000);
  TimerHook hook;
  int fired = 0;
  wheel.schedule(hook, 1500, [&] { ++fired; });
  wheel.advance(1499);
  EXPECT_EQ(fired, 0);
  wheel.advance(1500 + TimerWheel::kTickMs);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(hook.armed());
  wheel.advance(5000);
  EXPECT_EQ(fired, 1);
}

// A cancelled hook never fires and the wheel reports nothing armed.
TEST(TimerWheel, CancelledHookNeverFires) {
  TimerWheel wheel(0);
  TimerHook hook;
  bool fired = false;
  wheel.schedule(hook, 100, [&] { fired = true; });
  EXPECT_EQ(wheel.armed_count(), 1u);
  wheel.cancel(hook);
  EXPECT_EQ(wheel.armed_count(), 0u);
  EXPECT_EQ(wheel.poll_timeout_ms(0), -1);
  wheel.advance(10000);
  EXPECT_FALSE(fired);
}

// Deadlines further away than one turn of the wheel wait for their turn.
TEST(TimerWheel, LongDeadlinesWaitSeveralTurns) {
  TimerWheel wheel(0);
  TimerHook hook;
  const uint64_t turn = TimerWheel::kTickMs * TimerWheel::kSlots;
  const uint64_t deadline = 3 * turn + 40;
  bool fired = false;
  wheel.schedule(hook, deadline, [&] { fired = true; });
  for (uint64_t t = 0; t < deadline; t += 50) {
    wheel.advance(t);
    ASSERT_FALSE(fired) << "fired early at " << t;
  }
  wheel.advance(deadline + TimerWheel::kTickMs);
  EXPECT_TRUE(fired);
}

// A big jump in time (a stalled loop) fires everything that became due, in one advance.
TEST(TimerWheel, JumpFiresEverythingDue) {
  TimerWheel wheel(0);
  std::vector<std::unique_ptr<TimerHook>> hooks;
  int fired = 0;
  for (int i = 0; i < 100; ++i) {
    hooks.push_back(std::make_unique<TimerHook>());
    wheel.schedule(*hooks.back(), static_cast<uint64_t>(i) * 97, [&] { ++fired; });
  }
  wheel.advance(1'000'000);
  EXPECT_EQ(fired, 100);
  EXPECT_EQ(wheel.armed_count(), 0u);
}

// A callback may re-arm its own hook and cancel another hook due in the same tick.
TEST(TimerWheel, CallbacksMayRearmAndCancel) {
  TimerWheel wheel(0);
  TimerHook a, b;
  int a_fired = 0, b_fired = 0;
  wheel.schedule(a, 100, [&] {
    ++a_fired;
    wheel.cancel(b);
    if (a_fired == 1) wheel.schedule(a, 300, [&] { ++a_fired; });
  });
  wheel.schedule(b, 100, [&] { ++b_fired; });
  wheel.advance(200);
  wheel.advance(400);
  EXPECT_EQ(a_fired, 2);
  EXPECT_EQ(b_fired, 0);  // a was armed first, so it runs first and cancels b
  EXPECT_EQ(wheel.armed_count(), 0u);
}

// The loop's sleep never overshoots the next tick while anything is armed.
TEST(TimerWheel, PollTimeoutBoundedByTick) {
  TimerWheel wheel(0);
  TimerHook hook;
  wheel.schedule(hook, 10'000, [] {});
  for (uint64_t now = 0; now < 100; ++now) {
    const int t = wheel.poll_timeout_ms(now);
    EXPECT_GT(t, 0);
    EXPECT_LE(t, static_cast<int>(TimerWheel::kTickMs));
  }
}

}  // namespace
}  // namespace balance::net
