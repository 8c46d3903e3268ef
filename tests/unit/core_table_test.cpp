// Tests of the shared channel table (src/core/table.h): endpoint seqlock, slots, appends, header checks.
#include "core/table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

namespace core = balance::core;

namespace {

std::unique_ptr<core::Table> make_table() {
  auto table = std::make_unique<core::Table>();
  table->init(4321, 99, 1700000000);
  return table;
}

core::Endpoint v4(const char* text, uint16_t port) { return core::Endpoint::from_numeric(text, port).value(); }

core::Endpoint v6(const char* text, uint16_t port, uint32_t scope = 0) {
  core::Endpoint e = core::Endpoint::from_numeric(text, port).value();
  e.scope_id = scope;
  return e;
}

}  // namespace

TEST(Table, InitWritesAValidHeaderAndEmptyGroups) {
  // Intent: a fresh table has a valid header, the given identity, and empty round-robin groups.
  auto t = make_table();
  EXPECT_TRUE(t->header_valid());
  EXPECT_EQ(t->header.master_pid.load(), 4321);
  EXPECT_EQ(t->header.master_start_ticks, 99u);
  EXPECT_EQ(t->header.start_time, 1700000000);
  EXPECT_FALSE(t->checks_on());
  for (uint32_t g = 0; g < core::kMaxGroups; ++g) {
    EXPECT_EQ(t->channel_count(g), 0u);
    EXPECT_EQ(t->group_type(g), core::GroupType::RoundRobin);
    EXPECT_EQ(t->groups[g].cursor.load(), 0u);
  }
  EXPECT_FALSE(t->groups[5].channels[7].endpoint().valid());
  EXPECT_EQ(t->groups[5].channels[7].enabled.load(), 0u);
}

TEST(Table, InitClearsAPreviouslyUsedTable) {
  // Intent: init() on a used table (a reused segment) resets every counter and channel.
  auto t = make_table();
  ASSERT_EQ(t->append_channel(0, v4("10.0.0.1", 80), 3, true), 0);
  auto& ch = t->groups[0].channels[0];
  ASSERT_TRUE(ch.try_acquire());
  ch.sent.store(10);
  t->groups[0].cursor.store(9);
  t->init(1, 0, 0);
  EXPECT_EQ(t->channel_count(0), 0u);
  EXPECT_EQ(t->groups[0].cursor.load(), 0u);
  EXPECT_EQ(ch.c.load(), 0u);
  EXPECT_EQ(ch.totalc.load(), 0u);
  EXPECT_EQ(ch.sent.load(), 0u);
  EXPECT_FALSE(ch.endpoint().valid());
  EXPECT_EQ(ch.endpoint_seq.load() % 2, 0u);
}

TEST(Table, EndpointRoundTripsThroughTheSeqlock) {
  // Intent: set_endpoint then endpoint gives back the same IPv4 and IPv6 values, seq even after.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  for (const auto& e : {v4("192.0.2.1", 8080), v6("2001:db8::1", 443), v6("fe80::1", 22, 3)}) {
    ch.set_endpoint(e);
    EXPECT_EQ(ch.endpoint(), e);
    EXPECT_EQ(ch.endpoint_seq.load() % 2, 0u);
  }
  ch.set_endpoint(core::Endpoint{});
  EXPECT_FALSE(ch.endpoint().valid());
}

TEST(Table, StuckOddSeqReadsInvalidAndAWriteRepairsIt) {
  // Intent: a seq stuck odd (writer died mid-write) reads as no address; the next write repairs it.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  ch.set_endpoint(v4("192.0.2.1", 80));
  ch.endpoint_seq.store(ch.endpoint_seq.load() + 1);
  EXPECT_FALSE(ch.endpoint().valid());
  ch.set_endpoint(v4("192.0.2.2", 81));
  EXPECT_EQ(ch.endpoint(), v4("192.0.2.2", 81));
  ch.endpoint_seq.store(UINT32_MAX);  // odd, and the wrap of the counter
  ch.set_endpoint(v4("192.0.2.3", 82));
  EXPECT_EQ(ch.endpoint(), v4("192.0.2.3", 82));
}

TEST(Table, ReaderNeverSeesATornEndpoint) {
  // Intent: a reader racing a writer sees one of the written endpoints, never a mix.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  const core::Endpoint a = v6("2001:db8::aaaa", 1111, 1);
  const core::Endpoint b = v6("2001:db8::bbbb", 2222, 2);
  ch.set_endpoint(a);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 20000; ++i) ch.set_endpoint(i % 2 ? a : b);
    stop.store(true);
  });
  int torn = 0;
  while (!stop.load()) {
    const core::Endpoint e = ch.endpoint();
    if (e.valid() && e != a && e != b) ++torn;
  }
  writer.join();
  EXPECT_EQ(torn, 0);
}

TEST(Table, TryAcquireHonoursMaxcAndCountsTries) {
  // Intent: try_acquire takes slots up to maxc, counting each in totalc; maxc 0 is unlimited.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  ch.maxc.store(2);
  EXPECT_TRUE(ch.try_acquire());
  EXPECT_TRUE(ch.try_acquire());
  EXPECT_FALSE(ch.try_acquire());
  EXPECT_EQ(ch.c.load(), 2u);
  EXPECT_EQ(ch.totalc.load(), 2u);
  ch.maxc.store(0);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(ch.try_acquire());
  EXPECT_EQ(ch.c.load(), 102u);
  EXPECT_EQ(ch.totalc.load(), 102u);
}

TEST(Table, TryAcquireAndReleaseNeverWrap) {
  // Intent: release at 0 stays 0; try_acquire at UINT32_MAX (unlimited) refuses instead of wrapping.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  ch.release();
  EXPECT_EQ(ch.c.load(), 0u);
  ASSERT_TRUE(ch.try_acquire());
  ch.release();
  ch.release();
  EXPECT_EQ(ch.c.load(), 0u);
  ch.c.store(UINT32_MAX);
  EXPECT_FALSE(ch.try_acquire());
  EXPECT_EQ(ch.c.load(), UINT32_MAX);
  EXPECT_EQ(ch.totalc.load(), 1u);
  ch.c.store(UINT32_MAX - 1);
  EXPECT_TRUE(ch.try_acquire());
  EXPECT_EQ(ch.c.load(), UINT32_MAX);
}

TEST(Table, UsableNeedsEnabledHealthyAndRoom) {
  // Intent: usable() is enabled && (healthy or checks off) && below maxc.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  EXPECT_FALSE(ch.usable(false));  // init leaves slots disabled
  ch.enabled.store(1);
  EXPECT_TRUE(ch.usable(false));
  ch.health.store(static_cast<uint32_t>(core::Health::Down));
  EXPECT_TRUE(ch.usable(false));
  EXPECT_FALSE(ch.usable(true));
  ch.health.store(static_cast<uint32_t>(core::Health::Up));
  EXPECT_TRUE(ch.usable(true));
  ch.maxc.store(1);
  ASSERT_TRUE(ch.try_acquire());
  EXPECT_FALSE(ch.usable(false));
  ch.release();
  EXPECT_TRUE(ch.usable(false));
}

TEST(Table, ResetCountersZeroesTotalcSentRcvdOnly) {
  // Intent: reset_counters (the `reset` command) leaves c, maxc and failures alone.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  ch.maxc.store(4);
  ASSERT_TRUE(ch.try_acquire());
  ch.sent.store(5);
  ch.rcvd.store(6);
  ch.failures.store(2);
  ch.reset_counters();
  EXPECT_EQ(ch.totalc.load(), 0u);
  EXPECT_EQ(ch.sent.load(), 0u);
  EXPECT_EQ(ch.rcvd.load(), 0u);
  EXPECT_EQ(ch.c.load(), 1u);
  EXPECT_EQ(ch.maxc.load(), 4u);
  EXPECT_EQ(ch.failures.load(), 2u);
}

TEST(Table, AppendChannelFillsUpToTheLimitThenRefuses) {
  // Intent: append_channel returns 0..kMaxChannels-1, then -1; the fields are as given.
  auto t = make_table();
  for (uint32_t i = 0; i < core::kMaxChannels; ++i) {
    const auto port = static_cast<uint16_t>(2000 + i);
    ASSERT_EQ(t->append_channel(3, v4("10.0.0.1", port), i, i % 2 == 0, 0), static_cast<int>(i));
    const auto& ch = t->groups[3].channels[i];
    EXPECT_EQ(ch.endpoint(), v4("10.0.0.1", port));
    EXPECT_EQ(ch.maxc.load(), i);
    EXPECT_EQ(ch.enabled.load(), i % 2 == 0 ? 1u : 0u);
    EXPECT_EQ(ch.weight.load(), 1u);  // weight 0 becomes 1
    EXPECT_EQ(t->channel_count(3), i + 1);
  }
  EXPECT_EQ(t->append_channel(3, v4("10.0.0.2", 1), 0, true), -1);
  EXPECT_EQ(t->channel_count(3), core::kMaxChannels);
  EXPECT_EQ(t->append_channel(core::kMaxGroups, v4("10.0.0.2", 1), 0, true), -1);
  EXPECT_EQ(t->append_channel(UINT32_MAX, v4("10.0.0.2", 1), 0, true), -1);
  EXPECT_EQ(t->append_channel(4, v4("10.0.0.2", 1), 0, true, 7), 0);
  EXPECT_EQ(t->groups[4].channels[0].weight.load(), 7u);
}

TEST(Table, AppendChannelResetsAReusedSlot) {
  // Intent: a slot left dirty past nchannels is fully reset when appended.
  auto t = make_table();
  auto& ch = t->groups[0].channels[0];
  ch.c.store(5);
  ch.totalc.store(6);
  ch.failures.store(7);
  ch.health.store(static_cast<uint32_t>(core::Health::Down));
  ASSERT_EQ(t->append_channel(0, v4("10.0.0.1", 80), 0, true), 0);
  EXPECT_EQ(ch.c.load(), 0u);
  EXPECT_EQ(ch.totalc.load(), 0u);
  EXPECT_EQ(ch.failures.load(), 0u);
  EXPECT_EQ(ch.health.load(), static_cast<uint32_t>(core::Health::Up));
}

TEST(Table, ChannelCountAndGroupTypeClamp) {
  // Intent: corrupt nchannels and type are clamped; out-of-range groups read as empty round robin.
  auto t = make_table();
  t->groups[1].nchannels.store(1000000000);
  EXPECT_EQ(t->channel_count(1), core::kMaxChannels);
  EXPECT_EQ(t->channel_count(core::kMaxGroups), 0u);
  EXPECT_EQ(t->channel_count(UINT32_MAX), 0u);
  EXPECT_EQ(t->append_channel(1, v4("10.0.0.1", 80), 0, true), -1);
  t->groups[2].type.store(77);
  EXPECT_EQ(t->group_type(2), core::GroupType::RoundRobin);
  t->groups[2].type.store(static_cast<uint32_t>(core::GroupType::Hash));
  EXPECT_EQ(t->group_type(2), core::GroupType::Hash);
  t->groups[2].type.store(static_cast<uint32_t>(core::GroupType::LeastConn));
  EXPECT_EQ(t->group_type(2), core::GroupType::LeastConn);
  EXPECT_EQ(t->group_type(core::kMaxGroups), core::GroupType::RoundRobin);
}

TEST(Table, ChecksFlag) {
  // Intent: checks_on() reflects the kFlagChecks bit only.
  auto t = make_table();
  t->header.flags.store(~core::kFlagChecks);
  EXPECT_FALSE(t->checks_on());
  t->header.flags.store(core::kFlagChecks);
  EXPECT_TRUE(t->checks_on());
}

TEST(Table, HeaderValidDetectsEachBadField) {
  // Intent: header_valid() fails on a wrong magic, layout version, size, group or channel limit.
  auto t = make_table();
  ASSERT_TRUE(t->header_valid());
  t->header.magic[0] = 'X';
  EXPECT_FALSE(t->header_valid());
  t->header.magic[0] = 'B';
  t->header.magic[7] = '!';
  EXPECT_FALSE(t->header_valid());
  t->header.magic[7] = '\0';
  ASSERT_TRUE(t->header_valid());

  t->header.layout_version = core::kLayoutVersion + 1;
  EXPECT_FALSE(t->header_valid());
  t->header.layout_version = core::kLayoutVersion;

  t->header.table_size = sizeof(core::Table) - 64;
  EXPECT_FALSE(t->header_valid());
  t->header.table_size = sizeof(core::Table);

  t->header.max_groups = core::kMaxGroups * 2;
  EXPECT_FALSE(t->header_valid());
  t->header.max_groups = core::kMaxGroups;

  t->header.max_channels = core::kMaxChannels - 1;
  EXPECT_FALSE(t->header_valid());
  t->header.max_channels = core::kMaxChannels;
  EXPECT_TRUE(t->header_valid());
}

TEST(Table, ProgramVersionIsTerminated) {
  // Intent: the version string in the header is NUL-terminated within its field.
  auto t = make_table();
  EXPECT_LT(strnlen(t->header.program_version, sizeof t->header.program_version), sizeof t->header.program_version);
  EXPECT_GT(strnlen(t->header.program_version, sizeof t->header.program_version), 0u);
}
