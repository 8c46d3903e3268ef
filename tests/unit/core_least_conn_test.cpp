// Tests of least connections (src/core/least_conn.h): the least loaded channel relative to its
// weight, ties rotating from the cursor, unusable channels skipped, 64-bit comparisons, and
// long-held connections spread by weight, also with concurrent pickers.
#include "core/least_conn.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace core = balance::core;

namespace {

std::unique_ptr<core::Table> make_table(std::vector<uint32_t> weights) {
  auto table = std::make_unique<core::Table>();
  table->init(1234, 0, 0);
  table->groups[0].type.store(static_cast<uint32_t>(core::GroupType::LeastConn));
  for (uint32_t i = 0; i < weights.size(); ++i) {
    core::Endpoint e;
    e.family = AF_INET;
    e.port = static_cast<uint16_t>(3000 + i);
    inet_pton(AF_INET, "127.0.0.1", e.addr.data());
    EXPECT_GE(table->append_channel(0, e, 0, true, weights[i]), 0);
  }
  return table;
}

int claim(core::Table& t, uint64_t exclude = 0) {
  const auto idx = core::least_conn_claim(t.groups[0], t.channel_count(0), t.checks_on(), exclude);
  return idx ? static_cast<int>(*idx) : -1;
}

// A client that connects and holds its connection: the pick, then its slot.
int hold(core::Table& t) {
  const int c = claim(t);
  if (c >= 0) {
    EXPECT_TRUE(t.groups[0].channels[c].try_acquire());
  }
  return c;
}

std::vector<core::LoadView> views(std::vector<uint32_t> conns, std::vector<uint32_t> weights = {}) {
  std::vector<core::LoadView> v;
  for (size_t i = 0; i < conns.size(); ++i) v.push_back({conns[i], i < weights.size() ? weights[i] : 1, true});
  return v;
}

}  // namespace

// The channel with the fewest connections wins, wherever the scan starts.
TEST(LeastConn, PicksTheLeastLoaded) {
  const auto v = views({3, 1, 2, 5});
  for (uint32_t from = 0; from < 6; ++from) EXPECT_EQ(core::least_loaded(v, from), 1u);
}

// Relative to weight: 2/1 > 5/3, so the heavier channel takes the next client; equal ratios
// (1/1 and 3/3) tie and go to the first from `from`.
TEST(LeastConn, WeightsRespected) {
  EXPECT_EQ(core::least_loaded(views({2, 5}, {1, 3}), 0), 1u);
  EXPECT_EQ(core::least_loaded(views({1, 3}, {1, 3}), 0), 0u);
  EXPECT_EQ(core::least_loaded(views({1, 3}, {1, 3}), 1), 1u);
  EXPECT_EQ(core::least_loaded(views({0, 1}, {0, 1}), 1), 0u);  // weight 0 counts as 1: 0/1 < 1/1
}

// Products are computed in 64 bits: the largest counts and weights compare correctly.
TEST(LeastConn, NoOverflow) {
  const uint32_t big = 0xffffffffu;
  EXPECT_EQ(core::least_loaded(views({big, big - 1}, {big, big}), 0), 1u);
  EXPECT_EQ(core::least_loaded(views({big, 1}, {big, 1}), 0), 0u);  // 1 vs 1: tie, first wins
  EXPECT_EQ(core::least_loaded(views({big, 2}, {big, 1}), 0), 0u);  // 1 < 2
}

// No usable view, or none at all: nullopt.
TEST(LeastConn, NothingUsable) {
  auto v = views({0, 0});
  v[0].usable = v[1].usable = false;
  EXPECT_FALSE(core::least_loaded(v, 0).has_value());
  EXPECT_FALSE(core::least_loaded({}, 0).has_value());
  auto t = make_table({});
  EXPECT_EQ(claim(*t), -1);
}

// Equal loads: the picks rotate from the group's cursor, one channel after another.
TEST(LeastConn, TiesRotate) {
  auto t = make_table({1, 1, 1});
  for (int i = 0; i < 7; ++i) EXPECT_EQ(claim(*t), i % 3);  // nothing held: always a tie
  t->groups[0].cursor.store(2);
  EXPECT_EQ(claim(*t), 2);
  EXPECT_EQ(t->groups[0].cursor.load(), 0u);
}

// Full, disabled, down and excluded channels are never picked, however idle.
TEST(LeastConn, SkipsFullDisabledDownAndExcluded) {
  auto t = make_table({1, 1, 1, 1, 1});
  auto& ch = t->groups[0].channels;
  ch[0].c.store(10);
  ch[1].maxc.store(3);
  ch[1].c.store(3);
  ch[2].enabled.store(0);
  t->header.flags.store(core::kFlagChecks);
  ch[3].health.store(static_cast<uint32_t>(core::Health::Down));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(claim(*t), 4);
  EXPECT_EQ(claim(*t, uint64_t{1} << 4), 0);
  EXPECT_EQ(claim(*t, (uint64_t{1} << 4) | 1u), -1);
}

// Long-held connections spread evenly, and 1:3 by weight.
TEST(LeastConn, LongHeldConnectionsSpreadByWeight) {
  auto even = make_table({1, 1, 1, 1});
  for (int i = 0; i < 400; ++i) hold(*even);
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(even->groups[0].channels[i].c.load(), 100u);

  auto weighted = make_table({1, 3});
  for (int i = 0; i < 400; ++i) hold(*weighted);
  EXPECT_EQ(weighted->groups[0].channels[0].c.load(), 100u);
  EXPECT_EQ(weighted->groups[0].channels[1].c.load(), 300u);

  // Connections ending on one channel make it the next choice.
  for (int i = 0; i < 5; ++i) weighted->groups[0].channels[0].release();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(hold(*weighted), 0);
}

// Concurrent pickers holding their connections keep the channels within a few connections of
// each other: a lost race on the cursor rescans with fresh counts.
TEST(LeastConn, ConcurrentPickersStayBalanced) {
  auto t = make_table({1, 1, 1, 1});
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&t] {
      for (int i = 0; i < 500; ++i) {
        const auto idx = core::least_conn_claim(t->groups[0], 4, false);
        ASSERT_TRUE(idx.has_value());
        t->groups[0].channels[*idx].try_acquire();
      }
    });
  }
  for (auto& th : threads) th.join();
  uint32_t lo = UINT32_MAX, hi = 0, sum = 0;
  for (uint32_t i = 0; i < 4; ++i) {
    const uint32_t c = t->groups[0].channels[i].c.load();
    lo = std::min(lo, c);
    hi = std::max(hi, c);
    sum += c;
  }
  EXPECT_EQ(sum, 2000u);
  EXPECT_LE(hi - lo, 8u);
}
