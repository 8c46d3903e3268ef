// Helpers shared by the net layer's unit tests (real loopback sockets).
#pragma once

#include <linux/tcp.h>  // struct tcp_info with tcpi_segs_out (glibc's is older)
#include <netinet/in.h>  // IPPROTO_TCP
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstdint>

namespace balance::net {

// How many TCP segments a socket has sent so far: what the segment-saving techniques change.
inline uint32_t segments_sent(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len), 0);
  return info.tcpi_segs_out;
}

}  // namespace balance::net
