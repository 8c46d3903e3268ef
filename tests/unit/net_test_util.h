// Helpers shared by the net layer's unit tests (real loopback sockets).
#pragma once

#include <linux/tcp.h>  // struct tcp_info with tcpi_segs_out (glibc's is older)
#include <netinet/in.h>  // IPPROTO_TCP
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstdint>

#include "net/fd.h"

namespace balance::net {

// A TCP socket listening on 127.0.0.1 on a port the kernel picks; `addr` gets that address.
// `flags` go to socket() (e.g. SOCK_NONBLOCK).
inline Fd listen_on_loopback(sockaddr_in& addr, int flags = 0, int backlog = 8) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | flags, 0));
  addr = sockaddr_in{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(::listen(fd.get(), backlog), 0);
  EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  return fd;
}

// Waits, at most `timeout_ms`, until `fd` reports one of `events` (poll flags); false on timeout.
inline bool wait_for(int fd, short events, int timeout_ms = 5000) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

// How many TCP segments a socket has sent so far: what the segment-saving techniques change.
inline uint32_t segments_sent(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len), 0);
  return info.tcpi_segs_out;
}

}  // namespace balance::net
