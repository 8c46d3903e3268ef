// Tests of Endpoint (src/core/endpoint.h): sockaddr conversions, formatting, unmapping.
#include "core/endpoint.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>

namespace core = balance::core;

namespace {

core::Endpoint parse(const char* text, uint16_t port, uint32_t scope = 0) {
  core::Endpoint e = core::Endpoint::from_numeric(text, port).value_or(core::Endpoint{});
  if (e.family == AF_INET6) e.scope_id = scope;
  return e;
}

}  // namespace

TEST(Endpoint, Ipv4SockaddrRoundTrip) {
  // Intent: an IPv4 endpoint becomes a sockaddr_in (network byte order) and comes back equal.
  const core::Endpoint e = parse("192.0.2.33", 8080);
  sockaddr_storage ss;
  const socklen_t len = e.to_sockaddr(ss);
  ASSERT_EQ(len, sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
  EXPECT_EQ(sin->sin_family, AF_INET);
  EXPECT_EQ(ntohs(sin->sin_port), 8080);
  char buf[INET_ADDRSTRLEN];
  EXPECT_STREQ(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf), "192.0.2.33");
  const auto back = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, e);
}

TEST(Endpoint, Ipv6SockaddrRoundTrip) {
  // Intent: an IPv6 endpoint with a scope id becomes a sockaddr_in6 and comes back equal.
  const core::Endpoint e = parse("fe80::1:2", 443, 2);
  sockaddr_storage ss;
  const socklen_t len = e.to_sockaddr(ss);
  ASSERT_EQ(len, sizeof(sockaddr_in6));
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  EXPECT_EQ(sin6->sin6_family, AF_INET6);
  EXPECT_EQ(ntohs(sin6->sin6_port), 443);
  EXPECT_EQ(sin6->sin6_scope_id, 2u);
  EXPECT_EQ(sin6->sin6_flowinfo, 0u);
  const auto back = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, e);
}

TEST(Endpoint, InvalidEndpointHasNoSockaddr) {
  // Intent: a default (invalid) endpoint converts to length 0.
  sockaddr_storage ss;
  EXPECT_EQ(core::Endpoint{}.to_sockaddr(ss), 0u);
  EXPECT_FALSE(core::Endpoint{}.valid());
}

TEST(Endpoint, FromSockaddrRejectsOtherFamiliesAndShortLengths) {
  // Intent: AF_UNIX, null, and lengths too short for the family all give nullopt.
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  EXPECT_FALSE(core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&sun), sizeof sun));
  EXPECT_FALSE(core::Endpoint::from_sockaddr(nullptr, sizeof(sockaddr_in)));

  sockaddr_storage ss;
  const socklen_t len4 = parse("10.1.2.3", 1).to_sockaddr(ss);
  EXPECT_FALSE(core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len4 - 1));
  EXPECT_FALSE(core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), 0));
  const socklen_t len6 = parse("::1", 1).to_sockaddr(ss);
  EXPECT_FALSE(core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len6 - 1));
}

TEST(Endpoint, FromSockaddrAcceptsAFullStorage) {
  // Intent: what accept() fills (a sockaddr_storage and its length) is read as is.
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(5000);
  inet_pton(AF_INET6, "2001:db8::5", &sin6.sin6_addr);
  sockaddr_storage ss{};
  std::memcpy(&ss, &sin6, sizeof sin6);
  const auto e = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), sizeof ss);
  ASSERT_TRUE(e);
  EXPECT_EQ(*e, parse("2001:db8::5", 5000));
}

TEST(Endpoint, ToStringFormats) {
  // Intent: messages show "a.b.c.d:port" and "[v6]:port"; address_string is the bare address.
  EXPECT_EQ(parse("127.0.0.1", 80).to_string(), "127.0.0.1:80");
  EXPECT_EQ(parse("::1", 80).to_string(), "[::1]:80");
  EXPECT_EQ(parse("2001:db8::1", 65535).to_string(), "[2001:db8::1]:65535");
  EXPECT_EQ(parse("::ffff:10.0.0.1", 0).to_string(), "[::ffff:10.0.0.1]:0");
  EXPECT_EQ(parse("10.0.0.1", 25).address_string(), "10.0.0.1");
  EXPECT_EQ(parse("2001:DB8:0:0:0:0:0:A", 25).address_string(), "2001:db8::a");
  EXPECT_EQ(core::Endpoint{}.address_string(), "-");
}

TEST(Endpoint, ALinkLocalAddressShowsItsScope) {
  // Intent: fe80::1 on interface 2 is not fe80::1 on interface 3, so what a user reads (show,
  // messages) names the scope as getaddrinfo() takes it back; a PROXY header has the bare address.
  const core::Endpoint scoped = parse("fe80::1", 80, 2);
  EXPECT_EQ(scoped.host_string(), "fe80::1%2");
  EXPECT_EQ(scoped.to_string(), "[fe80::1%2]:80");
  EXPECT_EQ(scoped.address_string(), "fe80::1");
  EXPECT_EQ(parse("::1", 80).host_string(), "::1");
  EXPECT_EQ(parse("127.0.0.1", 80).host_string(), "127.0.0.1");
}

TEST(Endpoint, ALinkLocalAddressWithoutScopeLacksIt) {
  // Intent: fe80::/10 with no interface cannot be used by a socket (EINVAL): that is told apart.
  EXPECT_TRUE(parse("fe80::1", 80).lacks_scope());
  EXPECT_TRUE(parse("febf::1", 80).lacks_scope());
  EXPECT_FALSE(parse("fe80::1", 80, 2).lacks_scope());
  for (const char* text : {"fec0::1", "fe7f::1", "::1", "2001:db8::1", "::ffff:127.0.0.1", "127.0.0.1"}) {
    EXPECT_FALSE(parse(text, 80).lacks_scope()) << text;
  }
  EXPECT_FALSE(core::Endpoint{}.lacks_scope());
}

TEST(Endpoint, UnmappedTurnsMappedIpv6IntoIpv4) {
  // Intent: ::ffff:a.b.c.d becomes the IPv4 endpoint a.b.c.d with the same port.
  const core::Endpoint m = parse("::ffff:192.0.2.7", 4242);
  const core::Endpoint u = m.unmapped();
  EXPECT_EQ(u, parse("192.0.2.7", 4242));
  EXPECT_EQ(u.to_string(), "192.0.2.7:4242");
}

TEST(Endpoint, UnmappedLeavesOtherAddressesAlone) {
  // Intent: IPv4, plain IPv6, near-miss prefixes and invalid endpoints are returned unchanged.
  for (const core::Endpoint& e : {parse("192.0.2.7", 1), parse("2001:db8::1", 2), parse("::1", 3),
                                  parse("::fffe:192.0.2.7", 4), parse("1::ffff:192.0.2.7", 5), core::Endpoint{}}) {
    EXPECT_EQ(e.unmapped(), e) << e.to_string();
  }
}

TEST(Endpoint, LoopbackIs127Slash8AndColonColon1) {
  // Intent: the addresses of this host's loopback interface, also written v4-mapped, and no other.
  for (const char* a : {"127.0.0.1", "127.255.3.9", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(parse(a, 80).is_loopback()) << a;
  }
  for (const char* a : {"126.255.255.255", "128.0.0.1", "0.0.0.0", "192.0.2.1", "::", "::2", "::ffff:192.0.2.1",
                        "2001:db8::1", "fe80::1"}) {
    EXPECT_FALSE(parse(a, 80).is_loopback()) << a;
  }
  EXPECT_FALSE(core::Endpoint{}.is_loopback());
}
