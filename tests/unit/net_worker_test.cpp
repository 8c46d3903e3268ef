// A Worker pinned to a CPU (--cpus): it serves on that CPU, and one that cannot be pinned never
// serves (its thread ends before its loop runs, so no client of its listener is taken).
#include "net/worker.h"
#include "net/sockets.h"
#include "cpu_mask_util.h"
#include "net_test_util.h"

#include <sched.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <future>
#include <memory>
#include <optional>
#include <vector>

namespace balance::net {
namespace {

using test::own_cpu_mask;
using test::cpu_outside_own_mask;

struct Fixture {
  cli::Config config;
  std::unique_ptr<core::Table> table = std::make_unique<core::Table>();
  WorkerShared shared{config, *table, false};
  sockaddr_in address{};
  Fd listener = listen_on_loopback(address, SOCK_NONBLOCK, 8);
};

TEST(PinnedWorker, ServesOnItsCpu) {
  Fixture f;
  const unsigned cpu = own_cpu_mask().back();
  Worker worker(f.shared, 0, {f.listener.get()}, cpu);
  ASSERT_EQ(worker.start(), 0);
  worker.go(true);
  std::promise<int> ran_on;
  worker.loop().post([&] { ran_on.set_value(::sched_getcpu()); });
  EXPECT_EQ(ran_on.get_future().get(), static_cast<int>(cpu));
  worker.stop_and_join();
}

TEST(PinnedWorker, OneThatCannotBePinnedNeverServes) {
  Fixture f;
  Worker worker(f.shared, 0, {f.listener.get()}, cpu_outside_own_mask());
  EXPECT_EQ(worker.start(), EINVAL);
  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&f.address), sizeof f.address), 0);
  worker.go(false);
  worker.stop_and_join();  // returns: the thread ended without running its loop
  EXPECT_EQ(queued_clients(f.listener.get()), 1u);  // still waiting to be accepted
}

TEST(PinnedWorker, StoppedWhileHeldItEndsWithoutServing) {
  Fixture f;
  Worker worker(f.shared, 0, {f.listener.get()}, std::nullopt);
  ASSERT_EQ(worker.start(), 0);
  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&f.address), sizeof f.address), 0);
  worker.stop_and_join();  // go() never called: stop_and_join releases the thread, not to serve
  EXPECT_EQ(queued_clients(f.listener.get()), 1u);
}

}  // namespace
}  // namespace balance::net
