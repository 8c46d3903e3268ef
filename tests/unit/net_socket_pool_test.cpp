// The worker's pool of sockets kept for later connects: by kind, bounded, emptied on request, and
// still in the loop's epoll set while kept, parked (their events go to no watch).
#include "net/socket_pool.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <functional>
#include <vector>

namespace balance::net {
namespace {

// Records the events it is given.
struct Recorder final : Watch {
  void on_events(uint32_t events) override { seen.push_back(events); }
  std::vector<uint32_t> seen;
};

// A loop, and sockets watched by it as a session's would be before their connection ends.
struct Loop {
  EventLoop loop;
  Recorder session;

  Fd watched_socket(int family) {
    Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0));
    EXPECT_TRUE(loop.add(fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, session));
    return fd;
  }
  // Runs the loop, each of `steps` after a batch of events (what epoll had ready then), and
  // stops it after the last.
  void run_steps(std::vector<std::function<void()>> steps) {
    size_t i = 0;
    std::function<void()> step = [&] {
      steps[i++]();
      if (i < steps.size()) loop.post(step);
      else loop.stop();
    };
    loop.post(step);
    loop.run();
  }
};

core::Endpoint at(const char* text) { return *core::Endpoint::from_numeric(text, 80); }

TEST(SocketKind, FamilyAsReachedAndLoopbackCongestionControl) {
  const SocketKind v4 = socket_kind(at("127.0.0.1"), "cubic");
  EXPECT_EQ(v4.family, AF_INET);
  EXPECT_TRUE(v4.loopback_cc);
  const SocketKind mapped = socket_kind(at("::ffff:127.0.0.1"), "cubic");  // reached over IPv4
  EXPECT_EQ(mapped.family, AF_INET);
  EXPECT_TRUE(mapped.loopback_cc);
  EXPECT_FALSE(socket_kind(at("127.0.0.1"), "").loopback_cc);  // --loopback-cc system
  EXPECT_FALSE(socket_kind(at("192.0.2.1"), "cubic").loopback_cc);
  const SocketKind v6 = socket_kind(at("::1"), "cubic");
  EXPECT_EQ(v6.family, AF_INET6);
  EXPECT_TRUE(v6.loopback_cc);
}

TEST(SocketPool, GivesBackOnlyASocketOfTheKindAsked) {
  Loop l;
  SocketPool pool(l.loop);
  Fd v4 = l.watched_socket(AF_INET);
  const int fd = v4.get();
  pool.keep(std::move(v4), {AF_INET, true});
  EXPECT_FALSE(pool.take({AF_INET, false}));
  EXPECT_FALSE(pool.take({AF_INET6, true}));
  Fd back = pool.take({AF_INET, true});
  EXPECT_EQ(back.get(), fd);
  EXPECT_FALSE(pool.take({AF_INET, true}));
  EXPECT_EQ(pool.idle(), 0u);
}

TEST(SocketPool, KeepsAtMostItsLimitPerKindAndClosesTheRest) {
  Loop l;
  SocketPool pool(l.loop);
  int last = -1;
  for (size_t i = 0; i < SocketPool::kMaxIdle + 3; ++i) {
    Fd fd = l.watched_socket(AF_INET6);
    last = fd.get();
    pool.keep(std::move(fd), {AF_INET6, false});
  }
  EXPECT_EQ(pool.idle(), SocketPool::kMaxIdle);
  EXPECT_EQ(::fcntl(last, F_GETFD), -1);  // the one over the limit was closed
  pool.keep(l.watched_socket(AF_INET), {AF_INET, false});  // another kind has its own room
  EXPECT_EQ(pool.idle(), SocketPool::kMaxIdle + 1);
  EXPECT_TRUE(pool.clear());
  EXPECT_EQ(pool.idle(), 0u);
  EXPECT_FALSE(pool.clear());
}

TEST(SocketPool, AKeptSocketIsParkedUntilANewOwnerTakesIt) {
  // A socket that is not connected reports EPOLLHUP (and EPOLLOUT), as a disconnected kept one does.
  Loop l;
  SocketPool pool(l.loop);
  Fd fd = l.watched_socket(AF_INET);
  Fd held;
  pool.keep(std::move(fd), {AF_INET, false});
  Recorder next;
  l.run_steps({
      [&] {
        EXPECT_TRUE(l.session.seen.empty());  // the session that kept it hears nothing more
        Fd taken = pool.take({AF_INET, false});
        ASSERT_TRUE(taken);
        // No ADD: it is still watched, and the next batch reads its state afresh for `next`.
        ASSERT_TRUE(l.loop.retarget(taken.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, next));
        pool.keep(std::move(taken), {AF_INET, false});  // kept again: back to the pool
        EXPECT_TRUE(next.seen.empty());
        taken = pool.take({AF_INET, false});
        ASSERT_TRUE(l.loop.retarget(taken.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, next));
        held = std::move(taken);
      },
      [] {},
  });
  ASSERT_EQ(next.seen.size(), 1u);  // once: edge-triggered
  EXPECT_TRUE(next.seen[0] & EPOLLHUP);
  EXPECT_TRUE(l.session.seen.empty());
}

TEST(SocketPool, ASocketTheLoopDoesNotWatchIsClosedNotKept) {
  Loop l;
  SocketPool pool(l.loop);
  Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
  const int n = fd.get();
  pool.keep(std::move(fd), {AF_INET, false});
  EXPECT_EQ(pool.idle(), 0u);
  EXPECT_EQ(::fcntl(n, F_GETFD), -1);
}

}  // namespace
}  // namespace balance::net
