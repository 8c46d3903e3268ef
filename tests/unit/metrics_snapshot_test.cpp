// Tests that a snapshot copies the table's numbers, skips empty groups and clamps corrupt values.
#include "metrics/snapshot.h"

#include <gtest/gtest.h>

#include "metrics_test_util.h"
#include "version.h"

namespace core = balance::core;
namespace metrics = balance::metrics;
using metrics::testing::endpoint;

TEST(MetricsSnapshot, CopiesHeaderAndChannelNumbers) {
  auto table = metrics::testing::empty_table(1700000000);
  table->header.accepted_total.store(42);
  table->header.refused_total.store(3);
  table->append_channel(0, endpoint("127.0.0.1", 8081), 16, true, 3);
  metrics::testing::set_counters(table->groups[0].channels[0], {5, 100, 2, 4096, 8192});

  const metrics::Snapshot snap = metrics::take_snapshot(*table, 1700000123456);
  EXPECT_EQ(snap.version, balance::kVersion);
  EXPECT_EQ(snap.start_time, 1700000000);
  EXPECT_EQ(snap.sampled_ms, 1700000123456);
  EXPECT_EQ(snap.threads, 2u);
  EXPECT_FALSE(snap.checks_on);
  EXPECT_EQ(snap.accepted_total, 42u);
  EXPECT_EQ(snap.refused_total, 3u);
  ASSERT_EQ(snap.groups.size(), 1u);
  ASSERT_EQ(snap.groups[0].channels.size(), 1u);
  const metrics::ChannelSample& ch = snap.groups[0].channels[0];
  EXPECT_EQ(ch.backend(), "127.0.0.1:8081");
  EXPECT_TRUE(ch.enabled);
  EXPECT_TRUE(ch.up);
  EXPECT_EQ(ch.connections, 5u);
  EXPECT_EQ(ch.max_connections, 16u);
  EXPECT_EQ(ch.weight, 3u);
  EXPECT_EQ(ch.connections_total, 100u);
  EXPECT_EQ(ch.connect_failures, 2u);
  EXPECT_EQ(ch.sent_bytes, 4096u);
  EXPECT_EQ(ch.received_bytes, 8192u);
}

TEST(MetricsSnapshot, KeepsOnlyGroupsWithChannelsInOrder) {
  auto table = metrics::testing::empty_table();
  table->append_channel(2, endpoint("10.0.0.2", 80), 0, true);
  table->append_channel(5, endpoint("10.0.0.5", 80), 0, false);
  table->append_channel(5, endpoint("2001:db8::5", 443), 0, true);
  table->groups[5].type.store(static_cast<uint32_t>(core::GroupType::Hash));

  const metrics::Snapshot snap = metrics::take_snapshot(*table, 0);
  ASSERT_EQ(snap.groups.size(), 2u);
  EXPECT_EQ(snap.groups[0].index, 2u);
  EXPECT_EQ(snap.groups[0].type, core::GroupType::RoundRobin);
  EXPECT_EQ(snap.groups[1].index, 5u);
  EXPECT_EQ(snap.groups[1].type, core::GroupType::Hash);
  ASSERT_EQ(snap.groups[1].channels.size(), 2u);
  EXPECT_FALSE(snap.groups[1].channels[0].enabled);
  EXPECT_EQ(snap.groups[1].channels[1].index, 1u);
  EXPECT_EQ(snap.groups[1].channels[1].backend(), "[2001:db8::5]:443");
}

TEST(MetricsSnapshot, ClampsACorruptTable) {
  auto table = metrics::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 1), 0, true);
  table->groups[0].nchannels.store(100000);               // beyond kMaxChannels
  table->groups[0].type.store(77);                        // no such type
  table->groups[0].channels[0].health.store(9);           // neither up nor down
  table->groups[0].channels[1].endpoint_seq.store(1);     // a writer that never finished
  table->groups[0].channels[2].enabled.store(0xdeadbeef);  // any non-zero is enabled

  const metrics::Snapshot snap = metrics::take_snapshot(*table, 0);
  ASSERT_EQ(snap.groups.size(), 1u);
  EXPECT_EQ(snap.groups[0].channels.size(), core::kMaxChannels);
  EXPECT_EQ(snap.groups[0].type, core::GroupType::RoundRobin);
  EXPECT_FALSE(snap.groups[0].channels[0].up);
  EXPECT_EQ(snap.groups[0].channels[1].backend(), "-");
  EXPECT_TRUE(snap.groups[0].channels[2].enabled);
}

TEST(MetricsSnapshot, NamesEveryGroupType) {
  EXPECT_STREQ(metrics::group_type_name(core::GroupType::RoundRobin), "round-robin");
  EXPECT_STREQ(metrics::group_type_name(core::GroupType::Hash), "hash");
  EXPECT_STREQ(metrics::group_type_name(core::GroupType::LeastConn), "least-connections");
}
