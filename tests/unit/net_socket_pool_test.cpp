// The worker's pool of sockets kept for later connects: by kind, bounded, emptied on request.
#include "net/socket_pool.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

namespace balance::net {
namespace {

Fd tcp_socket(int family) { return Fd(::socket(family, SOCK_STREAM, 0)); }

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
  SocketPool pool;
  Fd v4 = tcp_socket(AF_INET);
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
  SocketPool pool;
  int last = -1;
  for (size_t i = 0; i < SocketPool::kMaxIdle + 3; ++i) {
    Fd fd = tcp_socket(AF_INET6);
    last = fd.get();
    pool.keep(std::move(fd), {AF_INET6, false});
  }
  EXPECT_EQ(pool.idle(), SocketPool::kMaxIdle);
  EXPECT_EQ(::fcntl(last, F_GETFD), -1);  // the one over the limit was closed
  pool.keep(tcp_socket(AF_INET), {AF_INET, false});  // another kind has its own room
  EXPECT_EQ(pool.idle(), SocketPool::kMaxIdle + 1);
  EXPECT_TRUE(pool.clear());
  EXPECT_EQ(pool.idle(), 0u);
  EXPECT_FALSE(pool.clear());
}

}  // namespace
}  // namespace balance::net
