// Tests of smooth weighted round robin (src/core/weighted.h): the cycle (nginx's order, shares,
// smoothness, reduction), and claiming turns from a group's cursor: shares, classic order for
// equal weights, weight changes, unusable channels, and concurrent pickers.
#include "core/weighted.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

namespace core = balance::core;

namespace {

std::vector<uint8_t> cycle_of(std::vector<uint32_t> weights) {
  std::vector<uint8_t> out;
  core::smooth_cycle(weights, out);
  return out;
}

std::unique_ptr<core::Table> make_table(std::vector<uint32_t> weights, uint32_t g = 0) {
  auto table = std::make_unique<core::Table>();
  table->init(1234, 0, 0);
  for (uint32_t i = 0; i < weights.size(); ++i) {
    core::Endpoint e;
    e.family = AF_INET;
    e.port = static_cast<uint16_t>(2000 + i);
    inet_pton(AF_INET, "127.0.0.1", e.addr.data());
    EXPECT_GE(table->append_channel(g, e, 0, true, weights[i]), 0);
  }
  return table;
}

// One pick as the Selector would do it: the turn, then the channel's slot. -1 when none.
int pick(core::Table& t, core::SwrrCache& cache, uint32_t g = 0, uint64_t exclude = 0) {
  const auto idx = core::swrr_claim(t.groups[g], cache.sequence_for(t, g), t.checks_on(), exclude);
  if (!idx) return -1;
  EXPECT_TRUE(t.groups[g].channels[*idx].try_acquire());
  return static_cast<int>(*idx);
}

std::vector<int> counts_of(core::Table& t, core::SwrrCache& cache, int picks, uint32_t nchannels) {
  std::vector<int> counts(nchannels);
  for (int i = 0; i < picks; ++i) {
    const int c = pick(t, cache);
    EXPECT_GE(c, 0);
    if (c >= 0) ++counts[static_cast<size_t>(c)];
  }
  return counts;
}

}  // namespace

// nginx's documented example: weights 5, 1, 1 give a a b a c a a.
TEST(WeightedCycle, NginxExample) {
  EXPECT_EQ(cycle_of({5, 1, 1}), (std::vector<uint8_t>{0, 0, 1, 0, 2, 0, 0}));
}

// Equal weights give the plain order 0, 1, ..., n-1 (after reduction by the gcd).
TEST(WeightedCycle, EqualWeightsArePlainOrder) {
  EXPECT_EQ(cycle_of({1, 1, 1, 1}), (std::vector<uint8_t>{0, 1, 2, 3}));
  EXPECT_EQ(cycle_of({7, 7, 7}), (std::vector<uint8_t>{0, 1, 2}));
}

// Weights are reduced by their gcd, and each channel appears exactly its reduced weight times.
TEST(WeightedCycle, ReducedByGcdWithExactCounts) {
  EXPECT_EQ(cycle_of({2, 6}), cycle_of({1, 3}));
  const auto c = cycle_of({4, 2, 1, 3});
  ASSERT_EQ(c.size(), 10u);
  EXPECT_EQ(std::count(c.begin(), c.end(), 0), 4);
  EXPECT_EQ(std::count(c.begin(), c.end(), 1), 2);
  EXPECT_EQ(std::count(c.begin(), c.end(), 2), 1);
  EXPECT_EQ(std::count(c.begin(), c.end(), 3), 3);
}

// A heavy channel's turns are spread out: in every prefix (across the cycle's wrap too), each
// channel's count stays within 2 of its exact share, where bunched WRR would be off by up to 5.
TEST(WeightedCycle, TurnsAreSpreadOut) {
  for (const auto& w : std::vector<std::vector<uint32_t>>{{10, 10, 1}, {5, 1, 1}, {1, 3}, {7, 3, 2, 1}, {1, 1, 10}}) {
    const auto c = cycle_of(w);
    uint32_t total = 0;
    for (const uint32_t x : w) total += x;
    std::vector<int> seen(w.size());
    for (size_t k = 0; k < 2 * c.size(); ++k) {
      ++seen[c[k % c.size()]];
      for (size_t i = 0; i < w.size(); ++i) {
        const double exact = static_cast<double>(k + 1) * w[i] / total;
        EXPECT_LT(std::fabs(seen[i] - exact), 2.0) << "weights[0]=" << w[0] << " channel " << i << " turn " << k;
      }
    }
  }
}

// Zero weights are left out; all zero gives an empty cycle.
TEST(WeightedCycle, ZeroWeightsLeftOut) {
  EXPECT_EQ(cycle_of({0, 2, 0, 1}), (std::vector<uint8_t>{1, 3, 1}));
  EXPECT_TRUE(cycle_of({0, 0}).empty());
  EXPECT_TRUE(cycle_of({}).empty());
}

// Huge weights are scaled to a bounded cycle that keeps every channel and the proportions.
TEST(WeightedCycle, HugeWeightsScaledToABoundedCycle) {
  const std::vector<uint32_t> w = {1, 1000000, 4000000000u};
  const auto c = cycle_of(w);
  EXPECT_LE(c.size(), core::kMaxSwrrCycle + core::kMaxChannels);
  const double total = 1.0 + 1000000.0 + 4000000000.0;
  for (uint8_t i = 0; i < 3; ++i) {
    const auto turns = std::count(c.begin(), c.end(), i);
    EXPECT_GE(turns, 1);
    EXPECT_NEAR(static_cast<double>(turns) / static_cast<double>(c.size()), w[i] / total, 1e-3);
  }
  EXPECT_EQ(cycle_of({1000000, 3000000}), cycle_of({1, 3}));
}

// Weights 1:3 give exactly 1:3 over 4,000 sequential picks.
TEST(WeightedClaim, SharesOneToThree) {
  auto t = make_table({1, 3});
  core::SwrrCache cache;
  const auto counts = counts_of(*t, cache, 4000, 2);
  EXPECT_EQ(counts[0], 1000);
  EXPECT_EQ(counts[1], 3000);
}

// Equal weights are the classic round robin: channel order, and the cursor is the next channel
// index; a disabled channel's turn goes to the next one, as in balance 3.57.
TEST(WeightedClaim, EqualWeightsAreClassicRoundRobin) {
  for (const uint32_t w : {1u, 5u}) {
    auto t = make_table({w, w, w});
    core::SwrrCache cache;
    EXPECT_TRUE(cache.sequence_for(*t, 0).plain());
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(pick(*t, cache), i % 3);
      EXPECT_EQ(t->groups[0].cursor.load(), static_cast<uint32_t>((i + 1) % 3));
    }
    t->groups[0].channels[1].enabled.store(0);
    EXPECT_EQ(pick(*t, cache), 0);
    EXPECT_EQ(pick(*t, cache), 2);
    EXPECT_EQ(pick(*t, cache), 0);
  }
}

// A weight changed while running applies from the next pick (the cache rebuilds the cycle).
TEST(WeightedClaim, WeightChangeTakesEffect) {
  auto t = make_table({1, 2});
  core::SwrrCache cache;
  auto counts = counts_of(*t, cache, 300, 2);
  EXPECT_EQ(counts[0], 100);
  EXPECT_EQ(counts[1], 200);
  const uint64_t builds = cache.builds();
  t->groups[0].channels[1].weight.store(3);
  counts = counts_of(*t, cache, 400, 2);
  EXPECT_EQ(cache.builds(), builds + 1);
  EXPECT_NEAR(counts[0], 100, 1);  // the first turn continues from the old cursor position
  EXPECT_NEAR(counts[1], 300, 1);
}

// The cache rebuilds only when the weights or the set of enabled channels change.
TEST(WeightedClaim, CacheRebuildsOnlyOnChange) {
  auto t = make_table({1, 2});
  core::SwrrCache cache;
  const auto* first = &cache.sequence_for(*t, 0);
  EXPECT_EQ(&cache.sequence_for(*t, 0), first);
  EXPECT_EQ(cache.builds(), 1u);
  t->groups[0].channels[0].c.store(5);  // connection counts are not an input
  cache.sequence_for(*t, 0);
  EXPECT_EQ(cache.builds(), 1u);
  t->groups[0].channels[0].enabled.store(0);
  cache.sequence_for(*t, 0);
  EXPECT_EQ(cache.builds(), 2u);
  EXPECT_EQ(cache.sequence_for(*t, core::kMaxGroups).length(), 0u);  // out of range: no turns
}

// Disabled and down channels leave the cycle, and the others share by weight exactly.
TEST(WeightedClaim, DisabledAndDownChannelsShareOutTheirTurns) {
  auto t = make_table({5, 1, 3});
  core::SwrrCache cache;
  t->groups[0].channels[0].enabled.store(0);
  auto counts = counts_of(*t, cache, 400, 3);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[1], 100);
  EXPECT_EQ(counts[2], 300);

  t->groups[0].channels[0].enabled.store(1);
  t->header.flags.store(core::kFlagChecks);
  t->groups[0].channels[2].health.store(static_cast<uint32_t>(core::Health::Down));
  counts = counts_of(*t, cache, 600, 3);
  EXPECT_EQ(counts[0], 500);
  EXPECT_EQ(counts[1], 100);
  EXPECT_EQ(counts[2], 0);
}

// A full channel (c == maxc) is skipped; excluded channels are skipped; none usable: nullopt.
TEST(WeightedClaim, FullAndExcludedSkipped) {
  auto t = make_table({1, 3});
  core::SwrrCache cache;
  t->groups[0].channels[1].maxc.store(2);
  auto counts = counts_of(*t, cache, 10, 2);
  EXPECT_EQ(counts[1], 2);
  EXPECT_EQ(counts[0], 8);
  t->groups[0].channels[1].c.store(0);
  t->groups[0].channels[1].maxc.store(0);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(pick(*t, cache, 0, /*exclude=*/uint64_t{1} << 0), 1);
  t->groups[0].channels[0].enabled.store(0);
  t->groups[0].channels[1].enabled.store(0);
  EXPECT_EQ(pick(*t, cache), -1);
  EXPECT_EQ(pick(*t, cache, 1), -1);  // an empty group
}

// Concurrent pickers claim distinct turns, so the shares stay exact: 4 threads x 1,000 picks
// on 1:3 give exactly 1,000 and 3,000.
TEST(WeightedClaim, ConcurrentPicksKeepExactShares) {
  auto t = make_table({1, 3});
  std::vector<std::thread> threads;
  std::array<std::array<int, 2>, 4> counts{};
  for (size_t k = 0; k < 4; ++k) {
    threads.emplace_back([&t, &counts, k] {
      core::SwrrCache cache;  // per thread, as in the workers
      for (int i = 0; i < 1000; ++i) {
        const auto idx = core::swrr_claim(t->groups[0], cache.sequence_for(*t, 0), false);
        if (idx) ++counts[k][*idx];
      }
    });
  }
  for (auto& th : threads) th.join();
  int c0 = 0, c1 = 0;
  for (const auto& c : counts) {
    c0 += c[0];
    c1 += c[1];
  }
  EXPECT_EQ(c0, 1000);
  EXPECT_EQ(c1, 3000);
}
