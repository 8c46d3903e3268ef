// PROXY protocol headers, byte for byte as HAProxy's specification defines them, for IPv4,
// IPv6, IPv4-mapped clients and mixed families.
#include "net/proxy_protocol.h"

#include <arpa/inet.h>

#include <gtest/gtest.h>

namespace balance::net {
namespace {

core::Endpoint ep(int family, const char* text, uint16_t port) {
  core::Endpoint e;
  e.family = static_cast<uint16_t>(family);
  e.port = port;
  inet_pton(family, text, e.addr.data());
  return e;
}

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

// Version 1 is one text line naming the protocol, both addresses and both ports.
TEST(ProxyProtocol, V1Ipv4AndIpv6) {
  EXPECT_EQ(proxy_header_v1(ep(AF_INET, "192.0.2.1", 56324), ep(AF_INET, "198.51.100.7", 443)),
            "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
  EXPECT_EQ(proxy_header_v1(ep(AF_INET6, "2001:db8::1", 1000), ep(AF_INET6, "::1", 80)),
            "PROXY TCP6 2001:db8::1 ::1 1000 80\r\n");
}

// A client of the dual-stack listener arrives IPv4-mapped; the header names it as IPv4.
TEST(ProxyProtocol, MappedAddressesAreSentAsIpv4) {
  EXPECT_EQ(proxy_header_v1(ep(AF_INET6, "::ffff:127.0.0.1", 5000), ep(AF_INET6, "::ffff:127.0.0.2", 80)),
            "PROXY TCP4 127.0.0.1 127.0.0.2 5000 80\r\n");
}

// Families that do not match cannot be described: UNKNOWN (v1) and LOCAL (v2).
TEST(ProxyProtocol, MixedFamiliesAreUnknown) {
  EXPECT_EQ(proxy_header_v1(ep(AF_INET, "127.0.0.1", 1), ep(AF_INET6, "::1", 2)), "PROXY UNKNOWN\r\n");
  EXPECT_EQ(proxy_header_v2(ep(AF_INET, "127.0.0.1", 1), ep(AF_INET6, "::1", 2)), kSig + std::string("\x20\x00\x00\x00", 4));
}

// A connection of balance's own (a health check) relays no client: the same two headers.
TEST(ProxyProtocol, LocalConnections) {
  EXPECT_EQ(proxy_header_local_v1(), "PROXY UNKNOWN\r\n");
  EXPECT_EQ(proxy_header_local_v2(), kSig + std::string("\x20\x00\x00\x00", 4));
}

// Version 2 is the signature, version/command, family, length and the raw addresses and ports.
TEST(ProxyProtocol, V2Ipv4) {
  const std::string h = proxy_header_v2(ep(AF_INET, "10.0.0.1", 0x1234), ep(AF_INET, "10.0.0.2", 0x0050));
  const std::string expect = kSig + std::string("\x21\x11\x00\x0c", 4) + std::string("\x0a\x00\x00\x01", 4) +
                             std::string("\x0a\x00\x00\x02", 4) + std::string("\x12\x34\x00\x50", 4);
  EXPECT_EQ(h, expect);
}

TEST(ProxyProtocol, V2Ipv6) {
  const std::string h = proxy_header_v2(ep(AF_INET6, "2001:db8::1", 443), ep(AF_INET6, "::1", 8443));
  ASSERT_EQ(h.size(), 16u + 36u);
  EXPECT_EQ(h.substr(0, 16), kSig + std::string("\x21\x21\x00\x24", 4));
  in6_addr a;
  inet_pton(AF_INET6, "2001:db8::1", &a);
  EXPECT_EQ(h.substr(16, 16), std::string(reinterpret_cast<const char*>(&a), 16));
  EXPECT_EQ(static_cast<unsigned char>(h[48]) * 256 + static_cast<unsigned char>(h[49]), 443);
  EXPECT_EQ(static_cast<unsigned char>(h[50]) * 256 + static_cast<unsigned char>(h[51]), 8443);
}

}  // namespace
}  // namespace balance::net
