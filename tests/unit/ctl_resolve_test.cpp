// Tests of the real HOST/PORT resolution of `create` and `assign` (src/ctl/resolve.h).
#include "ctl/resolve.h"

#include <gtest/gtest.h>

#include <string>

namespace ctl = balance::ctl;

namespace {

TEST(CtlResolve, LiteralsAndServiceNames) {
  auto r = ctl::resolve_channel_address("127.0.0.1", "8080");
  ASSERT_EQ(r.status, ctl::ResolveStatus::Ok);
  EXPECT_EQ(r.endpoint.to_string(), "127.0.0.1:8080");
  r = ctl::resolve_channel_address("::1", "smtp");
  ASSERT_EQ(r.status, ctl::ResolveStatus::Ok);
  EXPECT_EQ(r.endpoint.to_string(), "[::1]:25");
  r = ctl::resolve_channel_address("2001:db8::1", "65535");
  ASSERT_EQ(r.status, ctl::ResolveStatus::Ok);
  EXPECT_EQ(r.endpoint.to_string(), "[2001:db8::1]:65535");
}

TEST(CtlResolve, Ipv6InBracketsAsOnTheCommandLine) {
  auto r = ctl::resolve_channel_address("[::1]", "80");
  ASSERT_EQ(r.status, ctl::ResolveStatus::Ok);
  EXPECT_EQ(r.endpoint.to_string(), "[::1]:80");
  r = ctl::resolve_channel_address("[fe80::1%1]", "80");
  ASSERT_EQ(r.status, ctl::ResolveStatus::Ok);
  EXPECT_EQ(r.endpoint.to_string(), "[fe80::1%1]:80");
  for (const char* host : {"[127.0.0.1]", "[localhost]", "[]", "[::1", "::1]", "[[::1]]"}) {
    EXPECT_EQ(ctl::resolve_channel_address(host, "80").status, ctl::ResolveStatus::BadHost) << host;
  }
}

TEST(CtlResolve, LinkLocalWithoutItsInterfaceIsInvalid) {
  // No socket can connect to fe80::1 without a scope: refused like any invalid address.
  for (const char* host : {"fe80::1", "[fe80::1]"}) {
    EXPECT_EQ(ctl::resolve_channel_address(host, "80").status, ctl::ResolveStatus::BadHost) << host;
  }
  EXPECT_EQ(ctl::resolve_channel_address("fe80::1%1", "80").status, ctl::ResolveStatus::Ok);
}

TEST(CtlResolve, NamesPreferIpv4) {
  const auto r = ctl::resolve_channel_address("localhost", "80");
  ASSERT_EQ(r.status, ctl::ResolveStatus::Ok);
  EXPECT_EQ(r.endpoint.to_string(), "127.0.0.1:80");
}

TEST(CtlResolve, BadHostsAndPorts) {
  EXPECT_EQ(ctl::resolve_channel_address("no.such.host.invalid", "80").status, ctl::ResolveStatus::BadHost);
  EXPECT_EQ(ctl::resolve_channel_address("", "80").status, ctl::ResolveStatus::BadHost);
  EXPECT_EQ(ctl::resolve_channel_address(std::string(1000, 'a'), "80").status, ctl::ResolveStatus::BadHost);
  EXPECT_EQ(ctl::resolve_channel_address("256.1.1.1.1", "80").status, ctl::ResolveStatus::BadHost);
  for (const char* port : {"0", "65536", "99999999999999999999", "notaport", "-1", ""}) {
    EXPECT_EQ(ctl::resolve_channel_address("127.0.0.1", port).status, ctl::ResolveStatus::BadPort) << port;
  }
}

}  // namespace
