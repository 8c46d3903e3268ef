// The event loop's ordering contract: tasks posted from other threads run between batches of
// events, never in the middle of one, so a task may destroy a watch that the batch still names.
#include "net/loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <thread>

namespace balance::net {
namespace {

struct CountingWatch final : Watch {
  explicit CountingWatch(int& counter) : counter_(counter) {}
  void on_events(uint32_t) override { ++counter_; }
  int& counter_;
};

// A task posted just before a watch's event, so that both are reported in one batch with the
// task's wake-up first, still runs only after the watch's event was dispatched (run in the middle
// of the batch, it would destroy the watch under the event still to come).
TEST(EventLoop, PostedTasksRunAfterTheBatch) {
  EventLoop loop;
  int events = 0;
  auto watch = std::make_unique<CountingWatch>(events);
  int seen_by_task = -1;
  Fd ready(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  std::thread poster([&] {
    loop.post([&] {
      seen_by_task = events;
      loop.remove(ready.get());
      watch.reset();  // destroying a watch from a posted task is allowed
      loop.stop();
    });
  });
  poster.join();
  // Becomes ready after the wake-up: epoll reports the two in this order, in one batch.
  ASSERT_TRUE(loop.add(ready.get(), EPOLLIN | EPOLLET, *watch));
  const uint64_t one = 1;
  ASSERT_EQ(::write(ready.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  loop.run();
  EXPECT_EQ(seen_by_task, 1) << "the posted task ran before the batch's event was dispatched";
  EXPECT_EQ(watch, nullptr);
}

// Posting from many threads loses nothing, and every task runs on the loop's thread.
TEST(EventLoop, PostFromManyThreadsRunsEveryTaskOnTheLoop) {
  EventLoop loop;
  constexpr int kThreads = 4, kPerThread = 250;
  int ran = 0;  // touched only on the loop's thread
  std::thread::id loop_thread;
  bool all_on_loop = true;
  loop.post([&] { loop_thread = std::this_thread::get_id(); });
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        loop.post([&] {
          all_on_loop = all_on_loop && std::this_thread::get_id() == loop_thread;
          if (++ran == kThreads * kPerThread) loop.stop();
        });
      }
    });
  }
  std::thread runner([&] { loop.run(); });
  for (auto& p : posters) p.join();
  runner.join();
  EXPECT_EQ(ran, kThreads * kPerThread);
  EXPECT_TRUE(all_on_loop);
}

}  // namespace
}  // namespace balance::net
