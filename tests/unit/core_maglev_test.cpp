// Tests of the Maglev table (src/core/maglev.h) on 100,000 synthetic client addresses: slot
// shares, spread, the remap fraction when a channel goes away (at most 1.2/N), clients coming
// back, determinism across independent builds, weights, and the per-thread cache.
#include "core/maglev.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace core = balance::core;

namespace {

constexpr int kClients = 100000;

core::Endpoint v4(uint32_t host_order_addr, uint16_t port) {
  core::Endpoint e;
  e.family = AF_INET;
  e.port = port;
  const uint32_t net = htonl(host_order_addr);
  std::memcpy(e.addr.data(), &net, 4);
  return e;
}

core::Endpoint parse(const char* text, uint16_t port) {
  return core::Endpoint::from_numeric(text, port).value_or(core::Endpoint{});
}

// Client keys of 100,000 consecutive addresses from 10.0.0.1: a realistic, unkind input.
const std::vector<uint64_t>& client_keys() {
  static const std::vector<uint64_t> keys = [] {
    std::vector<uint64_t> k;
    for (uint32_t i = 0; i < kClients; ++i) k.push_back(core::maglev_client_key(v4(0x0a000001u + i, 0)));
    return k;
  }();
  return keys;
}

// n channels 192.168.1.10+i:8080 with the given weights (default 1), all members.
core::MaglevSpec make_spec(uint32_t n, std::vector<uint32_t> weights = {}) {
  core::MaglevSpec spec;
  spec.count = n;
  spec.members = n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
  for (uint32_t i = 0; i < n; ++i) {
    spec.endpoints[i] = v4(0xc0a8010au + i, 8080);
    spec.weights[i] = i < weights.size() ? weights[i] : 1;
  }
  return spec;
}

std::unique_ptr<core::MaglevTable> build(const core::MaglevSpec& spec) {
  auto t = std::make_unique<core::MaglevTable>();
  t->build(spec);
  return t;
}

// The channel of every client among `eligible`.
std::vector<uint32_t> map_all(const core::MaglevTable& t, uint64_t eligible = ~uint64_t{0}) {
  std::vector<uint32_t> out;
  out.reserve(kClients);
  for (const uint64_t key : client_keys()) out.push_back(t.lookup(key, eligible).value_or(99));
  return out;
}

// The fraction of clients on `channel`.
double share(const std::vector<uint32_t>& mapping, uint32_t channel) {
  return static_cast<double>(std::count(mapping.begin(), mapping.end(), channel)) / kClients;
}

// Largest relative distance from the mean client count, over the channels in `eligible`.
double spread(const std::vector<uint32_t>& mapping, uint32_t n, uint64_t eligible) {
  std::vector<int> counts(n);
  for (const uint32_t c : mapping) {
    if (c < n) ++counts[c];
  }
  const double mean = static_cast<double>(kClients) / std::popcount(eligible);
  double worst = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if ((eligible >> i) & 1u) worst = std::max(worst, std::abs(counts[i] - mean) / mean);
  }
  return worst;
}

}  // namespace

// FNV-1a matches its published test vectors; the mixer is a fixed function.
TEST(MaglevHash, FixedSeedlessFunctions) {
  const auto bytes = [](const char* s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s), std::strlen(s));
  };
  EXPECT_EQ(core::fnv1a64(bytes("")), 0xcbf29ce484222325ull);
  EXPECT_EQ(core::fnv1a64(bytes("a")), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(core::fnv1a64(bytes("foobar")), 0x85944171f73967e8ull);
  EXPECT_EQ(core::mix64(0), 0u);
  EXPECT_NE(core::mix64(1), core::mix64(2));
}

// Names: a mapped IPv4 address is its IPv4 address; the scope id is not part of the name; the
// port and the repeat count are; a client's port is not.
TEST(MaglevHash, StableNames) {
  const auto a = parse("10.1.2.3", 80);
  EXPECT_EQ(core::maglev_channel_key(a, 0), core::maglev_channel_key(parse("::ffff:10.1.2.3", 80), 0));
  auto scoped = parse("fe80::1", 80);
  const uint64_t unscoped_key = core::maglev_channel_key(scoped, 0);
  scoped.scope_id = 7;
  EXPECT_EQ(core::maglev_channel_key(scoped, 0), unscoped_key);
  EXPECT_NE(core::maglev_channel_key(a, 0), core::maglev_channel_key(parse("10.1.2.3", 81), 0));
  EXPECT_NE(core::maglev_channel_key(a, 0), core::maglev_channel_key(a, 1));
  EXPECT_EQ(core::maglev_client_key(parse("10.9.9.9", 1000)), core::maglev_client_key(parse("10.9.9.9", 2000)));
  EXPECT_EQ(core::maglev_client_key(parse("10.9.9.9", 1)), core::maglev_client_key(parse("::ffff:10.9.9.9", 1)));
  EXPECT_NE(core::maglev_client_key(parse("10.9.9.9", 1)), core::maglev_client_key(parse("10.9.9.8", 1)));
}

// Equal weights: every channel holds floor(M/N) or ceil(M/N) slots.
TEST(MaglevTable, EqualShareOfSlots) {
  for (uint32_t n = 1; n <= 64; n = n < 16 ? n + 1 : n * 2) {
    const auto t = build(make_spec(n));
    for (uint32_t i = 0; i < n; ++i) {
      EXPECT_GE(t->slots_of(i), core::MaglevTable::kSize / n) << "n=" << n;
      EXPECT_LE(t->slots_of(i), core::MaglevTable::kSize / n + 1) << "n=" << n;
    }
  }
}

// 100,000 clients over N = 3..16 channels: every channel within 5% of the even share.
TEST(MaglevTable, SpreadWithinFivePercent) {
  for (uint32_t n = 3; n <= 16; ++n) {
    const auto spec = make_spec(n);
    EXPECT_LE(spread(map_all(*build(spec)), n, spec.members), 0.05) << "n=" << n;
  }
}

// One of N channels becomes unusable: only its clients move (at most 1.2/N of all), they spread
// over the rest within 5% of even, and every client comes back when it returns.
TEST(MaglevTable, OnlyTheLostChannelsClientsMoveAndComeBack) {
  for (uint32_t n = 3; n <= 16; ++n) {
    const auto spec = make_spec(n);
    const auto t = build(spec);
    const auto before = map_all(*t);
    for (uint32_t gone = 0; gone < n; ++gone) {
      const uint64_t rest = spec.members & ~(uint64_t{1} << gone);
      const auto after = map_all(*t, rest);
      int moved = 0;
      for (int i = 0; i < kClients; ++i) {
        if (after[i] == before[i]) continue;
        ++moved;
        ASSERT_EQ(before[i], gone) << "n=" << n << ": a client of another channel moved";
      }
      const double fraction = static_cast<double>(moved) / kClients;
      EXPECT_LE(fraction, 1.2 / n) << "n=" << n << " gone=" << gone;
      EXPECT_EQ(moved, std::count(before.begin(), before.end(), gone));
      EXPECT_LE(spread(after, n, rest), 0.05) << "n=" << n << " gone=" << gone;
      EXPECT_EQ(map_all(*t, spec.members), before);
    }
  }
}

// The paper's own way -- rebuilding the table without the channel -- also stays within 1.2/N,
// and rebuilding with it again restores every client.
TEST(MaglevTable, RebuildWithoutAChannelRemapsAtMostOnePointTwoOverN) {
  for (uint32_t n = 3; n <= 16; ++n) {
    const auto spec = make_spec(n);
    const auto before = map_all(*build(spec));
    auto without = spec;
    without.members &= ~uint64_t{1};  // channel 0 leaves the table
    const auto after = map_all(*build(without));
    int moved = 0;
    for (int i = 0; i < kClients; ++i) moved += after[i] != before[i];
    EXPECT_LE(static_cast<double>(moved) / kClients, 1.2 / n) << "n=" << n;
    EXPECT_EQ(map_all(*build(spec)), before);
  }
}

// Two tables built independently (two processes) from the same channel list agree on every
// client, with and without unusable channels.
TEST(MaglevTable, IndependentBuildsAgree) {
  const auto a = build(make_spec(7, {1, 2, 1, 1, 3, 1, 1}));
  core::MaglevTable b;
  b.build(make_spec(5));  // a different table first: build() must not depend on history
  b.build(make_spec(7, {1, 2, 1, 1, 3, 1, 1}));
  EXPECT_EQ(map_all(*a), map_all(b));
  EXPECT_EQ(map_all(*a, 0b1011010), map_all(b, 0b1011010));
}

// The same channels listed in another order send every client to the same address.
TEST(MaglevTable, ListingOrderDoesNotMatter) {
  const auto spec = make_spec(6, {1, 2, 1, 3, 1, 1});
  auto reversed = spec;
  std::reverse(reversed.endpoints.begin(), reversed.endpoints.begin() + 6);
  std::reverse(reversed.weights.begin(), reversed.weights.begin() + 6);
  const auto a = build(spec);
  const auto b = build(reversed);
  for (const uint64_t eligible : {uint64_t{0b111111}, uint64_t{0b011110}}) {
    // Channel i of `spec` is channel 5 - i of `reversed`.
    uint64_t mirrored = 0;
    for (uint32_t i = 0; i < 6; ++i) mirrored |= ((eligible >> i) & 1u) << (5 - i);
    const auto ma = map_all(*a, eligible);
    const auto mb = map_all(*b, mirrored);
    for (int i = 0; i < kClients; ++i) ASSERT_EQ(spec.endpoints[ma[i]], reversed.endpoints[mb[i]]) << "client " << i;
  }
}

// The mapping is pinned: changing the hashes, salts or M would remap every client of a running
// fleet (and make old and new versions disagree), so it must be a deliberate change.
TEST(MaglevTable, MappingIsPinned) {
  const auto t = build(make_spec(5));
  const auto m = map_all(*t);
  uint64_t h = 0xcbf29ce484222325ull;
  for (const uint32_t c : m) h = (h ^ c) * 0x100000001b3ull;
  EXPECT_EQ(h, 0x314f5698fc099ebfull) << std::hex << h;
}

// Weights 1:3 give about 1:3 of the slots and of the clients; 1:2:3:4 likewise.
TEST(MaglevTable, WeightsGiveProportionalShares) {
  const auto t = build(make_spec(2, {1, 3}));
  EXPECT_NEAR(t->slots_of(1) / static_cast<double>(core::MaglevTable::kSize), 0.75, 0.001);
  const auto m = map_all(*t);
  EXPECT_NEAR(share(m, 1), 0.75, 0.01);

  const auto t4 = build(make_spec(4, {1, 2, 3, 4}));
  const auto m4 = map_all(*t4);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(share(m4, i), (i + 1) / 10.0, 0.01);
  }
}

// A lost channel's clients go to the others in proportion to their weights.
TEST(MaglevTable, LostClientsFollowWeights) {
  const auto spec = make_spec(3, {1, 3, 2});
  const auto t = build(spec);
  const auto m = map_all(*t, 0b011);  // channel 2 gone: 1:3 between the others
  EXPECT_NEAR(share(m, 1), 0.75, 0.01);
}

// Channels with the same address and port are told apart by their repeat count.
TEST(MaglevTable, RepeatedEndpointsShareEvenly) {
  auto spec = make_spec(3);
  spec.endpoints[1] = spec.endpoints[0];
  spec.endpoints[2] = spec.endpoints[0];
  const auto t = build(spec);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_NEAR(t->slots_of(i), core::MaglevTable::kSize / 3.0, 1.0);
}

// With few channels eligible (the probes mostly miss), lookups still land only on eligible
// ones, deterministically, in proportion to their weights.
TEST(MaglevTable, FewEligibleChannels) {
  auto spec = make_spec(64);
  spec.weights[40] = 3;
  const auto t = build(spec);
  const uint64_t two = (uint64_t{1} << 3) | (uint64_t{1} << 40);
  const auto m = map_all(*t, two);
  EXPECT_DOUBLE_EQ(share(m, 3) + share(m, 40), 1.0);
  EXPECT_NEAR(share(m, 3), 0.25, 0.02);
  EXPECT_EQ(map_all(*t, two), m);
}

// No members, no eligible channel, or eligible bits past the group: nullopt, never a bad index.
TEST(MaglevTable, NothingEligible) {
  core::MaglevTable empty;
  empty.build(core::MaglevSpec{});
  EXPECT_FALSE(empty.primary(1).has_value());
  EXPECT_FALSE(empty.lookup(1, ~uint64_t{0}).has_value());
  const auto t = build(make_spec(4));
  EXPECT_FALSE(t->lookup(1, 0).has_value());
  EXPECT_FALSE(t->lookup(1, uint64_t{1} << 10).has_value());
  EXPECT_LT(t->primary(12345).value(), 4u);
  EXPECT_EQ(t->primary(12345), t->lookup(12345, ~uint64_t{0}));
}

// Huge weights still leave every channel some slots, and the table full.
TEST(MaglevTable, HugeWeights) {
  const auto t = build(make_spec(3, {1, 1000000, 4000000000u}));
  uint32_t total = 0;
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_GE(t->slots_of(i), 1u);
    total += t->slots_of(i);
  }
  EXPECT_EQ(total, core::MaglevTable::kSize);
}

// IPv6 channels and clients spread as well as IPv4 ones.
TEST(MaglevTable, IPv6) {
  core::MaglevSpec spec;
  spec.count = 5;
  spec.members = 0b11111;
  for (uint32_t i = 0; i < 5; ++i) {
    spec.endpoints[i] = parse(("2001:db8::" + std::to_string(i + 1)).c_str(), 443);
    spec.weights[i] = 1;
  }
  const auto t = build(spec);
  std::vector<uint32_t> m;
  auto client = parse("2001:db8:ffff::", 0);
  for (int i = 0; i < kClients; ++i) {
    client.addr[14] = static_cast<uint8_t>(i >> 8);
    client.addr[15] = static_cast<uint8_t>(i);
    client.addr[13] = static_cast<uint8_t>(i >> 16);
    m.push_back(*t->primary(core::maglev_client_key(client)));
  }
  EXPECT_LE(spread(m, 5, spec.members), 0.05);
}

// The cache builds a group's table once and rebuilds it only when its endpoints, weights or
// channel count change -- not when a channel is disabled or fills up.
TEST(MaglevCache, RebuildsOnlyWhenTheChannelListChanges) {
  auto table = std::make_unique<core::Table>();
  table->init(1, 0, 0);
  for (uint16_t port = 80; port < 84; ++port) ASSERT_GE(table->append_channel(2, parse("10.0.0.1", port), 0, true), 0);
  core::MaglevCache cache;
  const auto* first = &cache.table_for(*table, 2);
  EXPECT_EQ(first->spec().count, 4u);
  EXPECT_EQ(&cache.table_for(*table, 2), first);
  table->groups[2].channels[1].enabled.store(0);
  table->groups[2].channels[2].c.store(7);
  cache.table_for(*table, 2);
  EXPECT_EQ(cache.builds(), 1u);

  table->groups[2].channels[0].weight.store(2);
  EXPECT_EQ(cache.table_for(*table, 2).spec().weights[0], 2u);
  table->groups[2].channels[3].set_endpoint(parse("10.0.0.2", 80));
  cache.table_for(*table, 2);
  ASSERT_GE(table->append_channel(2, parse("10.0.0.3", 80), 0, true), 0);
  EXPECT_EQ(cache.table_for(*table, 2).spec().count, 5u);
  EXPECT_EQ(cache.builds(), 4u);
  EXPECT_FALSE(cache.table_for(*table, core::kMaxGroups).primary(1).has_value());
}

// A table built from the shared channel table maps like one built from the same list by hand
// (what another process would do).
TEST(MaglevCache, SpecFromTheChannelTable) {
  auto table = std::make_unique<core::Table>();
  table->init(1, 0, 0);
  const auto spec = make_spec(6, {1, 1, 2, 1, 1, 1});
  for (uint32_t i = 0; i < 6; ++i) ASSERT_GE(table->append_channel(0, spec.endpoints[i], 0, true, spec.weights[i]), 0);
  EXPECT_EQ(core::maglev_spec(*table, 0), spec);
  core::MaglevCache cache;
  EXPECT_EQ(map_all(cache.table_for(*table, 0)), map_all(*build(spec)));
}

// A channel created by the control shell starts disabled and out of the table: no client moves
// until it is enabled, and then about a fifth of them, nearly all to it (Maglev moves a few
// between the others as well). `assign` takes a channel out the same way: its new address's
// place in the table moves no client of another channel before it is enabled.
TEST(MaglevCache, ACreatedChannelMovesNoClientUntilEnabled) {
  auto table = std::make_unique<core::Table>();
  table->init(1, 0, 0);
  const auto spec = make_spec(5);
  for (uint32_t i = 0; i < 4; ++i) ASSERT_GE(table->append_channel(0, spec.endpoints[i], 0, true), 0);
  core::MaglevCache cache;
  const std::vector<uint32_t> before = map_all(cache.table_for(*table, 0));

  ASSERT_EQ(table->append_channel(0, spec.endpoints[4], 0, false), 4);  // `create`
  EXPECT_EQ(cache.table_for(*table, 0).spec().members, 0b01111u);
  EXPECT_EQ(map_all(cache.table_for(*table, 0)), before);

  core::Channel& created = table->groups[0].channels[4];
  created.enabled.store(1);  // `enable 4`
  created.hash_pending.store(0);
  const std::vector<uint32_t> after = map_all(cache.table_for(*table, 0));
  EXPECT_EQ(after, map_all(*build(spec)));
  size_t to_it = 0, between_others = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    if (after[i] != before[i]) ++(after[i] == 4 ? to_it : between_others);
  }
  EXPECT_NEAR(static_cast<double>(to_it) / kClients, 0.2, 0.03);
  EXPECT_LT(static_cast<double>(between_others) / kClients, 0.04);

  core::Channel& reassigned = table->groups[0].channels[1];  // `disable 1`, `assign 1 ...`
  reassigned.enabled.store(0);
  reassigned.hash_pending.store(1);
  reassigned.set_endpoint(v4(0x0a0a0a0au, 8080));
  const std::vector<uint32_t> out = map_all(cache.table_for(*table, 0));
  size_t others_moved = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_NE(out[i], 1u);
    if (after[i] != 1 && out[i] != after[i]) ++others_moved;
  }
  EXPECT_LT(static_cast<double>(others_moved) / kClients, 0.04);
}
