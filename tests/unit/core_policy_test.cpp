// Tests of the selection policy (src/core/policy.h): round robin (classic and smooth weighted),
// failover, maxc, Maglev hash groups with and without -H, least connections, -a, corrupt tables
// and concurrent selectors on one table.
#include "core/policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string_view>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "core/maglev.h"

namespace core = balance::core;

namespace {

constexpr uint16_t kBasePort = 1000;  // channel (g, c) listens on kBasePort + 100 * g + c

core::Endpoint make_endpoint(const char* text, uint16_t port) {
  return core::Endpoint::from_numeric(text, port).value_or(core::Endpoint{});
}

// The client of tests where the client does not matter.
const core::Endpoint kClient = make_endpoint("192.0.2.1", 40000);

// IPv4 client number i: 10.x.y.z (consecutive addresses), any port.
core::Endpoint v4_client(uint32_t i) {
  core::Endpoint e;
  e.family = AF_INET;
  e.port = static_cast<uint16_t>(1024 + i % 60000);
  e.addr[0] = 10;
  e.addr[1] = static_cast<uint8_t>(i >> 16);
  e.addr[2] = static_cast<uint8_t>(i >> 8);
  e.addr[3] = static_cast<uint8_t>(i);
  return e;
}

// `count` clients with random IPv4 addresses, or random IPv6 ones in 2001:db8::/32.
std::vector<core::Endpoint> random_clients(int count, unsigned seed, bool ipv6 = false) {
  std::mt19937 rng(seed);  // fixed seed: the tests are deterministic
  std::vector<core::Endpoint> clients;
  for (int i = 0; i < count; ++i) {
    core::Endpoint e = ipv6 ? make_endpoint("2001:db8::", 0) : make_endpoint("0.0.0.0", 0);
    for (size_t b = ipv6 ? 4 : 0; b < (ipv6 ? 16u : 4u); ++b) e.addr[b] = static_cast<uint8_t>(rng());
    e.port = static_cast<uint16_t>(rng());
    clients.push_back(e);
  }
  return clients;
}

std::unique_ptr<core::Table> make_table() {
  auto table = std::make_unique<core::Table>();
  table->init(1234, 0, 0);
  return table;
}

// Appends `count` channels to group g, all with the given maxc and weight.
void add_channels(core::Table& t, uint32_t g, uint32_t count, uint32_t maxc = 0, uint32_t weight = 1) {
  for (uint32_t i = 0; i < count; ++i) {
    const auto port = static_cast<uint16_t>(kBasePort + 100 * g + t.channel_count(g));
    ASSERT_GE(t.append_channel(g, make_endpoint("127.0.0.1", port), maxc, true, weight), 0);
  }
}

// Appends one channel per weight to group g.
void add_weighted(core::Table& t, uint32_t g, const std::vector<uint32_t>& weights) {
  for (const uint32_t w : weights) add_channels(t, g, 1, 0, w);
}

void set_type(core::Table& t, uint32_t g, core::GroupType type) {
  t.groups[g].type.store(static_cast<uint32_t>(type));
}

core::Channel& chan(core::Table& t, uint32_t g, uint32_t c) { return t.groups[g].channels[c]; }

// One client that connects at its first try and keeps the connection (no release).
std::optional<core::Pick> connect_client(core::Table& t, const core::Endpoint& client = kClient,
                                         core::SelectorOptions opts = {}) {
  core::Selector s(t, client, opts);
  auto p = s.next();
  if (p) s.connected(*p);
  return p;
}

// One client that connects at its first try and disconnects at once; returns its channel.
int short_client(core::Table& t, const core::Endpoint& client = kClient, core::SelectorOptions opts = {}) {
  auto p = connect_client(t, client, opts);
  if (!p) return -1;
  core::release(t, p->group, p->channel);
  return static_cast<int>(p->channel);
}

// Where a pick landed, as a comparable value.
std::pair<uint32_t, uint32_t> where(const std::optional<core::Pick>& p) {
  return p ? std::pair{p->group, p->channel} : std::pair{UINT32_MAX, UINT32_MAX};
}

// Every try of one client that fails at every channel, in order.
std::vector<std::pair<uint32_t, uint32_t>> tries_failing_everywhere(core::Table& t, const core::Endpoint& client,
                                                                     core::SelectorOptions opts = {}) {
  core::Selector s(t, client, opts);
  std::vector<std::pair<uint32_t, uint32_t>> tried;
  while (auto p = s.next()) {
    tried.push_back(where(p));
    s.failed(*p);
  }
  return tried;
}

constexpr core::SelectorOptions kWithH{.hash_failover = true, .autodisable = false};

}  // namespace

// ---------------------------------------------------------------- round robin

TEST(PolicyRoundRobin, NineSequentialClientsAlternateOverThreeChannels) {
  // Intent: sequential clients go 0,1,2,0,1,2,... and each pick carries its channel's address.
  auto t = make_table();
  add_channels(*t, 0, 3);
  for (uint32_t i = 0; i < 9; ++i) {
    core::Selector s(*t, kClient, {});
    auto p = s.next();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->group, 0u);
    EXPECT_EQ(p->channel, i % 3) << "client " << i;
    EXPECT_EQ(p->endpoint, make_endpoint("127.0.0.1", static_cast<uint16_t>(kBasePort + i % 3)));
    s.connected(*p);
    core::release(*t, p->group, p->channel);
  }
  for (uint32_t c = 0; c < 3; ++c) EXPECT_EQ(chan(*t, 0, c).totalc.load(), 3u);
}

TEST(PolicyRoundRobin, AlternatesWhileConnectionsAreHeld) {
  // Intent: the cursor, not the connection count, decides the order when nothing is released.
  auto t = make_table();
  add_channels(*t, 0, 3);
  for (uint32_t i = 0; i < 9; ++i) EXPECT_EQ(where(connect_client(*t)), std::pair(0u, i % 3));
  for (uint32_t c = 0; c < 3; ++c) EXPECT_EQ(chan(*t, 0, c).c.load(), 3u);
}

TEST(PolicyRoundRobin, SequentialClientsOnDifferentThreadsAlternate) {
  // Intent: the shared cursor keeps strict alternation when each client is handled by another thread.
  auto t = make_table();
  add_channels(*t, 0, 3);
  std::vector<int> order;
  for (int i = 0; i < 9; ++i) {
    int got = -1;
    std::thread([&] { got = short_client(*t); }).join();
    order.push_back(got);
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 0, 1, 2, 0, 1, 2}));
}

TEST(PolicyRoundRobin, DisabledChannelIsSkipped) {
  // Intent: a disabled channel is never picked and gets no tries.
  auto t = make_table();
  add_channels(*t, 0, 3);
  chan(*t, 0, 1).enabled.store(0);
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) order.push_back(short_client(*t));
  EXPECT_EQ(order, (std::vector<int>{0, 2, 0, 2, 0, 2}));
  EXPECT_EQ(chan(*t, 0, 1).totalc.load(), 0u);
}

TEST(PolicyRoundRobin, UnhealthyChannelIsSkippedOnlyWhenChecksAreOn) {
  // Intent: the health flag matters only while active checks are on.
  auto t = make_table();
  add_channels(*t, 0, 2);
  chan(*t, 0, 0).health.store(static_cast<uint32_t>(core::Health::Down));
  EXPECT_EQ(short_client(*t), 0);
  t->header.flags.store(core::kFlagChecks);
  EXPECT_EQ(short_client(*t), 1);
  EXPECT_EQ(short_client(*t), 1);
}

TEST(PolicyRoundRobin, FullChannelIsSkippedUntilReleased) {
  // Intent: maxc is respected; a full channel is skipped, and release() makes it usable again.
  auto t = make_table();
  add_channels(*t, 0, 3);
  chan(*t, 0, 0).maxc.store(1);
  auto held = connect_client(*t);
  EXPECT_EQ(where(held), std::pair(0u, 0u));
  EXPECT_EQ(short_client(*t), 1);
  EXPECT_EQ(short_client(*t), 2);
  EXPECT_EQ(short_client(*t), 1);  // cursor at 0, but 0 is full
  EXPECT_EQ(short_client(*t), 2);
  core::release(*t, held->group, held->channel);
  EXPECT_EQ(chan(*t, 0, 0).c.load(), 0u);
  EXPECT_EQ(short_client(*t), 0);
}

TEST(PolicyRoundRobin, FullGroupOverflowsToNextGroup) {
  // Intent: the man page's `mailserver1::16 ! mailserver2`: the 17th concurrent client goes to group 1.
  auto t = make_table();
  add_channels(*t, 0, 1, 16);
  add_channels(*t, 1, 1);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(where(connect_client(*t)), std::pair(0u, 0u));
  EXPECT_EQ(where(connect_client(*t)), std::pair(1u, 0u));
  core::release(*t, 0, 0);
  EXPECT_EQ(where(connect_client(*t)), std::pair(0u, 0u));
}

TEST(PolicyRoundRobin, FailoverWalksTheGroupWrappingThenTheNextGroup) {
  // Intent: failed() moves on through the group in order, wrapping, each once, then the next group.
  auto t = make_table();
  add_channels(*t, 0, 4);
  add_channels(*t, 1, 2);
  EXPECT_EQ(short_client(*t), 0);
  EXPECT_EQ(short_client(*t), 1);  // the cursor is now at 2
  core::Selector s(*t, kClient, {});
  std::vector<std::pair<uint32_t, uint32_t>> tried;
  while (auto p = s.next()) {
    tried.push_back(where(p));
    EXPECT_FALSE(s.failed(*p));
  }
  const std::vector<std::pair<uint32_t, uint32_t>> expected{{0, 2}, {0, 3}, {0, 0}, {0, 1}, {1, 0}, {1, 1}};
  EXPECT_EQ(tried, expected);
  EXPECT_FALSE(s.next());
  EXPECT_FALSE(s.next());  // stays exhausted
}

TEST(PolicyRoundRobin, FailoverSkipsUnusableChannelsOfTheGroup) {
  // Intent: the failover walk passes over disabled and full channels.
  auto t = make_table();
  add_channels(*t, 0, 4);
  chan(*t, 0, 1).enabled.store(0);
  chan(*t, 0, 2).maxc.store(1);
  chan(*t, 0, 2).c.store(1);
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 3u));
  s.failed(*p);
  EXPECT_FALSE(s.next());
}

TEST(PolicyRoundRobin, FailoverAcrossGroups) {
  // Intent: when the only channel of groups 0 and 1 fail, the client lands in group 2.
  auto t = make_table();
  add_channels(*t, 0, 1);
  add_channels(*t, 1, 1);
  add_channels(*t, 2, 2);
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(1u, 0u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(2u, 0u));
  s.connected(*p);
  EXPECT_EQ(t->groups[2].cursor.load(), 1u);
}

TEST(PolicyRoundRobin, EmptyAndUnusableGroupsAreSkipped) {
  // Intent: empty groups (holes) and groups with nothing usable are passed over in order.
  auto t = make_table();
  add_channels(*t, 0, 2);
  chan(*t, 0, 0).enabled.store(0);
  chan(*t, 0, 1).enabled.store(0);
  add_channels(*t, 3, 1);  // groups 1 and 2 are empty
  EXPECT_EQ(where(connect_client(*t)), std::pair(3u, 0u));
}

TEST(PolicyRoundRobin, AllChannelsDownGivesNothing) {
  // Intent: with every channel disabled next() is nullopt at once, no try is counted, and stays so.
  auto t = make_table();
  add_channels(*t, 0, 2);
  add_channels(*t, 1, 1);
  for (uint32_t g = 0; g < 2; ++g)
    for (uint32_t c = 0; c < t->channel_count(g); ++c) chan(*t, g, c).enabled.store(0);
  core::Selector s(*t, kClient, {});
  EXPECT_FALSE(s.next());
  EXPECT_FALSE(s.next());
  EXPECT_EQ(chan(*t, 0, 0).totalc.load() + chan(*t, 0, 1).totalc.load() + chan(*t, 1, 0).totalc.load(), 0u);
  auto empty = make_table();
  core::Selector on_empty_table(*empty, kClient, {});
  EXPECT_FALSE(on_empty_table.next());
}

TEST(PolicyRoundRobin, TotalcCountsEveryTryAndCReturnsToZero) {
  // Intent: each try counts in totalc; failed() and release() give every slot back.
  auto t = make_table();
  add_channels(*t, 0, 3);
  add_channels(*t, 1, 1);
  core::Selector s(*t, kClient, {});
  for (int i = 0; i < 3; ++i) {
    auto p = s.next();
    ASSERT_TRUE(p);
    EXPECT_EQ(chan(*t, p->group, p->channel).c.load(), 1u);
    s.failed(*p);
    EXPECT_EQ(chan(*t, p->group, p->channel).c.load(), 0u);
  }
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(1u, 0u));
  s.connected(*p);
  EXPECT_EQ(chan(*t, 1, 0).c.load(), 1u);
  core::release(*t, 1, 0);
  for (uint32_t c = 0; c < 3; ++c) {
    EXPECT_EQ(chan(*t, 0, c).totalc.load(), 1u);
    EXPECT_EQ(chan(*t, 0, c).failures.load(), 1u);
    EXPECT_EQ(chan(*t, 0, c).c.load(), 0u);
  }
  EXPECT_EQ(chan(*t, 1, 0).totalc.load(), 1u);
  EXPECT_EQ(chan(*t, 1, 0).c.load(), 0u);
  EXPECT_EQ(chan(*t, 1, 0).failures.load(), 0u);
}

TEST(PolicyRoundRobin, AutodisableDisablesOnFailureAndLaterClientsSkipIt) {
  // Intent: with -a a failed channel is disabled (failed() says so once) and no later client tries it.
  auto t = make_table();
  add_channels(*t, 0, 3);
  const core::SelectorOptions opts{.hash_failover = false, .autodisable = true};
  core::Selector a(*t, kClient, opts);
  core::Selector b(*t, kClient, opts);
  auto pa = a.next();
  EXPECT_EQ(where(pa), std::pair(0u, 0u));
  EXPECT_TRUE(a.failed(*pa));
  EXPECT_EQ(chan(*t, 0, 0).enabled.load(), 0u);
  auto pa2 = a.next();
  EXPECT_EQ(where(pa2), std::pair(0u, 1u));
  a.connected(*pa2);
  auto pb = b.next();  // a connected to 1 before b's first next(): the cursor is at 2
  EXPECT_EQ(where(pb), std::pair(0u, 2u));
  for (int i = 0; i < 6; ++i) EXPECT_NE(short_client(*t, kClient, opts), 0);
  EXPECT_EQ(chan(*t, 0, 0).totalc.load(), 1u);
}

TEST(PolicyRoundRobin, AutodisableReportsOnlyTheCallThatDisabled) {
  // Intent: two clients failing on the same channel: only the first failed() returns true.
  auto t = make_table();
  add_channels(*t, 0, 1);
  const core::SelectorOptions opts{.hash_failover = false, .autodisable = true};
  core::Selector a(*t, kClient, opts);
  core::Selector b(*t, kClient, opts);
  auto pa = a.next();
  auto pb = b.next();
  ASSERT_TRUE(pa && pb);
  EXPECT_TRUE(a.failed(*pa));
  EXPECT_FALSE(b.failed(*pb));
  EXPECT_EQ(chan(*t, 0, 0).c.load(), 0u);
  EXPECT_EQ(chan(*t, 0, 0).failures.load(), 2u);
}

TEST(PolicyRoundRobin, WithoutAutodisableAFailedChannelStaysEnabled) {
  // Intent: without -a failed() only counts; the channel keeps its turn for the next client.
  auto t = make_table();
  add_channels(*t, 0, 2);
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_FALSE(s.failed(*p));
  EXPECT_EQ(chan(*t, 0, 0).enabled.load(), 1u);
}

TEST(PolicyRoundRobin, CursorMovesAfterTheFailoverChannelThatAnswered) {
  // Intent: after a failover, the cursor is just after the channel that answered.
  auto t = make_table();
  add_channels(*t, 0, 4);
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 1u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 2u));
  s.connected(*p);
  EXPECT_EQ(t->groups[0].cursor.load(), 3u);
  EXPECT_EQ(short_client(*t), 3);
  EXPECT_EQ(short_client(*t), 0);
}

TEST(PolicyRoundRobin, FailoverWrapAnsweredMovesCursorPastIt) {
  // Intent: a failover that wraps to channel 0 leaves the cursor at 1.
  auto t = make_table();
  add_channels(*t, 0, 3);
  t->groups[0].cursor.store(2);
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 2u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  s.connected(*p);
  EXPECT_EQ(t->groups[0].cursor.load(), 1u);
}

TEST(PolicyRoundRobin, OutOfOrderConnectsDoNotMoveTheCursorBack) {
  // Intent: concurrent clients connecting in reverse order never move the cursor backwards.
  auto t = make_table();
  add_channels(*t, 0, 3);
  core::Selector a(*t, kClient, {});
  core::Selector b(*t, kClient, {});
  auto pa = a.next();
  auto pb = b.next();
  EXPECT_EQ(where(pa), std::pair(0u, 0u));
  EXPECT_EQ(where(pb), std::pair(0u, 1u));
  b.connected(*pb);
  a.connected(*pa);
  EXPECT_EQ(short_client(*t), 2);
}

TEST(PolicyRoundRobin, ChannelCreatedDuringAWalkIsHandled) {
  // Intent: a channel appended (`create`) while a client walks its group stays in range.
  auto t = make_table();
  add_channels(*t, 0, 2);
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  add_channels(*t, 0, 1);
  int tries = 1;
  while ((p = s.next())) {
    EXPECT_LT(p->channel, 3u);
    s.failed(*p);
    ++tries;
  }
  EXPECT_LE(tries, 3);
}

// ---------------------------------------------------------------- the man page's chain

TEST(PolicyChain, ManPageSelfReferencingChainFillsGroupsInOrder) {
  // Intent: the man page's chain holds 21 clients as 12, 4, 2+2, then the rest in the last group.
  // `localhost::12 ! localhost::4 ! localhost::2 localhost::2 ! localhost:25`, nothing released.
  auto t = make_table();
  add_channels(*t, 0, 1, 12);
  add_channels(*t, 1, 1, 4);
  add_channels(*t, 2, 2, 2);
  add_channels(*t, 3, 1, 0);
  std::array<std::array<int, 2>, 4> count{};
  for (int i = 0; i < 21; ++i) {
    auto p = connect_client(*t);
    ASSERT_TRUE(p);
    ++count[p->group][p->channel];
  }
  EXPECT_EQ(count[0][0], 12);
  EXPECT_EQ(count[1][0], 4);
  EXPECT_EQ(count[2][0], 2);
  EXPECT_EQ(count[2][1], 2);
  EXPECT_EQ(count[3][0], 1);
  EXPECT_EQ(where(connect_client(*t)), std::pair(3u, 0u));  // unlimited
}

// ---------------------------------------------------------------- hash (Maglev)

namespace {

// A table whose group 0 is a hash group of `count` channels (weight 1 unless given) and whose
// group 1 has one round-robin channel (where clients go when group 0 has nothing for them).
std::unique_ptr<core::Table> hash_table(uint32_t count, const std::vector<uint32_t>& weights = {}) {
  auto t = make_table();
  for (uint32_t i = 0; i < count; ++i) add_channels(*t, 0, 1, 0, i < weights.size() ? weights[i] : 1);
  set_type(*t, 0, core::GroupType::Hash);
  add_channels(*t, 1, 1);
  return t;
}

// The channel of group 0 each client lands on (connecting and disconnecting); -1 elsewhere.
std::vector<int> map_clients(core::Table& t, const std::vector<core::Endpoint>& clients,
                             core::SelectorOptions opts = {}) {
  std::vector<int> out;
  out.reserve(clients.size());
  for (const auto& c : clients) {
    const auto p = connect_client(t, c, opts);
    if (p) core::release(t, p->group, p->channel);
    out.push_back(p && p->group == 0 ? static_cast<int>(p->channel) : -1);
  }
  return out;
}

// How many entries of `map` are each of 0..n-1.
std::vector<int> counts_of(const std::vector<int>& map, uint32_t n) {
  std::vector<int> counts(n);
  for (const int c : map) {
    if (c >= 0 && static_cast<uint32_t>(c) < n) ++counts[static_cast<size_t>(c)];
  }
  return counts;
}

// Each count is within `tolerance` (a fraction) of its expected share of `total`.
void expect_shares(const std::vector<int>& counts, const std::vector<double>& shares, double tolerance) {
  int total = 0;
  for (const int c : counts) total += c;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = shares[i] * total;
    EXPECT_NEAR(counts[i], expected, tolerance * expected) << "channel " << i << " of " << counts.size();
  }
}

}  // namespace

TEST(PolicyHash, ClientGoesToItsSlotInTheMaglevTable) {
  // Intent: a hash group sends a client to the channel of its own slot in the group's Maglev
  // table, keyed by the client's address (IPv4 and IPv6).
  auto t = hash_table(5);
  core::MaglevTable mt;
  mt.build(core::maglev_spec(*t, 0));
  for (const bool v6 : {false, true}) {
    for (const auto& c : random_clients(2000, 7, v6)) {
      ASSERT_EQ(short_client(*t, c), static_cast<int>(*mt.primary(core::maglev_client_key(c))));
    }
  }
}

TEST(PolicyHash, SameClientKeepsItsChannel) {
  // Intent: 1,000 connections from one client, from any source port, all land on one channel;
  // an IPv4-mapped client lands where the same IPv4 address does.
  auto t = hash_table(4);
  for (const char* addr : {"198.51.100.23", "2001:db8:42::17"}) {
    const int home = short_client(*t, make_endpoint(addr, 40000));
    ASSERT_GE(home, 0);
    for (uint16_t i = 0; i < 1000; ++i) {
      ASSERT_EQ(short_client(*t, make_endpoint(addr, static_cast<uint16_t>(1024 + i))), home) << addr;
    }
  }
  for (uint32_t i = 0; i < 200; ++i) {
    const core::Endpoint v4 = v4_client(i * 7919);
    core::Endpoint mapped = make_endpoint("::ffff:0.0.0.0", v4.port);
    for (size_t b = 0; b < 4; ++b) mapped.addr[12 + b] = v4.addr[b];
    ASSERT_EQ(short_client(*t, mapped), short_client(*t, v4));
  }
}

TEST(PolicyHash, HashGroupIgnoresTheCursor) {
  // Intent: picks in a hash group do not depend on the round-robin cursor.
  auto t = hash_table(4);
  const int home = short_client(*t);
  for (uint32_t cursor = 0; cursor < 8; ++cursor) {
    t->groups[0].cursor.store(cursor);
    EXPECT_EQ(short_client(*t), home);
  }
}

TEST(PolicyHash, SpreadsRandomIpv4ClientsEvenly) {
  // Intent: 100,000 random IPv4 clients split over 4 channels within 5% of even.
  auto t = hash_table(4);
  expect_shares(counts_of(map_clients(*t, random_clients(100000, 12345)), 4), {0.25, 0.25, 0.25, 0.25}, 0.05);
}

TEST(PolicyHash, SpreadsConsecutiveIpv4ClientsEvenly) {
  // Intent: a block of 20,000 consecutive addresses (10.0.0.0 up) also spreads within 5% of even.
  auto t = hash_table(4);
  std::vector<core::Endpoint> clients;
  for (uint32_t i = 0; i < 20000; ++i) clients.push_back(v4_client(i));
  expect_shares(counts_of(map_clients(*t, clients), 4), {0.25, 0.25, 0.25, 0.25}, 0.05);
}

TEST(PolicyHash, SpreadsIpv6ClientsEvenly) {
  // Intent: 20,000 random IPv6 clients in 2001:db8::/32 split within 5% of even.
  auto t = hash_table(4);
  expect_shares(counts_of(map_clients(*t, random_clients(20000, 54321, true)), 4), {0.25, 0.25, 0.25, 0.25},
                0.05);
}

TEST(PolicyHash, WeightsSetTheShares) {
  // Intent: weights 1:3 give the channels a quarter and three quarters of 40,000 clients (within 5%).
  auto t = hash_table(2, {1, 3});
  expect_shares(counts_of(map_clients(*t, random_clients(40000, 99)), 2), {0.25, 0.75}, 0.05);
}

TEST(PolicyHash, TwoInstancesWithTheSameChannelsAgree) {
  // Intent: two instances configured with the same channels -- one building its table on another
  // thread, one listing the channels in reverse order -- send every client to the same backend.
  auto a = hash_table(6);
  auto b = hash_table(6);
  auto reversed = make_table();
  set_type(*reversed, 0, core::GroupType::Hash);
  for (uint32_t i = 6; i-- > 0;) {
    reversed->append_channel(0, make_endpoint("127.0.0.1", static_cast<uint16_t>(kBasePort + i)), 0, true);
  }
  const auto clients = random_clients(5000, 2024);
  // The backend each client lands on. Each table is done in one go: a thread keeps one Maglev
  // table per group, rebuilt whenever it sees the group's channels change.
  auto backends_of = [&](core::Table& t) {
    std::vector<core::Endpoint> out;
    for (const auto& c : clients) {
      const auto p = connect_client(t, c);
      out.push_back(p ? p->endpoint : core::Endpoint{});
    }
    return out;
  };
  std::vector<core::Endpoint> on_b;
  std::thread([&] { on_b = backends_of(*b); }).join();  // a fresh thread: its own tables, built from scratch
  const auto on_a = backends_of(*a);
  EXPECT_TRUE(on_a == on_b);
  EXPECT_TRUE(on_a == backends_of(*reversed));
  EXPECT_EQ(on_a.size(), clients.size());
  EXPECT_TRUE(std::all_of(on_a.begin(), on_a.end(), [](const core::Endpoint& e) { return e.valid(); }));
}

TEST(PolicyHash, WithoutHUnusableChannelSendsItsClientsToTheNextGroup) {
  // Intent: without -H a client whose channel is disabled, full or down goes to the next group,
  // and no other channel of the hash group is tried.
  auto t = hash_table(4);
  const auto home = static_cast<uint32_t>(short_client(*t));
  core::Channel& ch = chan(*t, 0, home);
  ch.enabled.store(0);
  EXPECT_EQ(where(connect_client(*t)), std::pair(1u, 0u));
  ch.enabled.store(1);
  ch.maxc.store(1);
  EXPECT_EQ(where(connect_client(*t)), std::pair(0u, home));
  EXPECT_EQ(where(connect_client(*t)), std::pair(1u, 0u));  // full now
  ch.maxc.store(0);
  ch.health.store(static_cast<uint32_t>(core::Health::Down));
  EXPECT_EQ(where(connect_client(*t)), std::pair(0u, home));  // health counts only with checks on
  t->header.flags.store(core::kFlagChecks);
  EXPECT_EQ(where(connect_client(*t)), std::pair(1u, 0u));
  for (uint32_t c = 0; c < 4; ++c) {
    if (c != home) {
      EXPECT_EQ(chan(*t, 0, c).totalc.load(), 0u) << c;
    }
  }
}

TEST(PolicyHash, WithoutHFailureGoesToNextGroup) {
  // Intent: without -H a failed channel is the only one tried in its hash group.
  auto t = hash_table(4);
  const auto home = static_cast<uint32_t>(short_client(*t));
  const std::vector<std::pair<uint32_t, uint32_t>> expected{{0, home}, {1, 0}};
  EXPECT_EQ(tries_failing_everywhere(*t, kClient), expected);
}

TEST(PolicyHash, WithHOnlyTheLostChannelsClientsMoveAndTheyComeBack) {
  // Intent: with -H, when one of 4 channels is disabled, down or full, exactly its clients move
  // (a quarter, at most 1.2/N), spread evenly over the other three (within 10%); when it is
  // usable again every client is back on its own channel.
  auto t = hash_table(4);
  const auto clients = random_clients(20000, 4242);
  const auto before = map_clients(*t, clients, kWithH);
  const uint32_t lost = 1;
  core::Channel& ch = chan(*t, 0, lost);
  const std::vector<std::pair<const char*, std::function<void(bool)>>> ways{
      {"disabled", [&](bool on) { ch.enabled.store(on ? 0 : 1); }},
      {"down", [&](bool on) {
         t->header.flags.store(on ? core::kFlagChecks : 0);
         ch.health.store(static_cast<uint32_t>(on ? core::Health::Down : core::Health::Up));
       }},
      {"full", [&](bool on) {
         ch.maxc.store(on ? 1 : 0);
         ch.c.store(on ? 1 : 0);
       }},
  };
  for (const auto& [how, lose] : ways) {
    lose(true);
    const auto during = map_clients(*t, clients, kWithH);
    std::vector<int> moved_to(4);
    int moved = 0;
    for (size_t i = 0; i < clients.size(); ++i) {
      if (before[i] == static_cast<int>(lost)) {
        ASSERT_NE(during[i], static_cast<int>(lost)) << how;
        ASSERT_GE(during[i], 0) << how;
        ++moved_to[static_cast<size_t>(during[i])];
        ++moved;
      } else {
        ASSERT_EQ(during[i], before[i]) << how << ": client " << i << " moved";
      }
    }
    EXPECT_LE(moved, 1.2 * static_cast<double>(clients.size()) / 4) << how;
    for (uint32_t c = 0; c < 4; ++c) {
      if (c != lost) {
        EXPECT_NEAR(moved_to[c], moved / 3.0, 0.1 * moved / 3.0) << how << " to channel " << c;
      }
    }
    lose(false);
    EXPECT_EQ(map_clients(*t, clients, kWithH), before) << how;
  }
}

TEST(PolicyHash, WithHFailoverTriesEachChannelOnceThenTheNextGroup) {
  // Intent: with -H failures try every channel of the hash group once, starting with the client's
  // own and going on where the client would go if it were unusable, then the next group.
  auto t = hash_table(3);
  for (const auto& client : random_clients(50, 31)) {
    const auto tried = tries_failing_everywhere(*t, client, kWithH);
    ASSERT_EQ(tried.size(), 4u);
    const uint32_t home = tried[0].second;
    EXPECT_EQ(tried[0], std::pair(0u, static_cast<uint32_t>(short_client(*t, client, kWithH))));
    EXPECT_EQ(tried[3], std::pair(1u, 0u));
    EXPECT_EQ(tried[0].second + tried[1].second + tried[2].second, 0u + 1u + 2u);  // each once
    EXPECT_EQ(tried[1].first + tried[2].first, 0u);
    chan(*t, 0, home).enabled.store(0);
    const auto moved = connect_client(*t, client, kWithH);
    EXPECT_EQ(where(moved), tried[1]);
    if (moved) core::release(*t, moved->group, moved->channel);
    chan(*t, 0, home).enabled.store(1);
  }
  for (uint32_t c = 0; c < 3; ++c) EXPECT_EQ(chan(*t, 0, c).c.load(), 0u);
}

TEST(PolicyHash, WithHNothingUsableGoesToTheNextGroup) {
  // Intent: with -H and every channel of the hash group unusable the client goes to the next group.
  auto t = hash_table(3);
  chan(*t, 0, 0).enabled.store(0);
  chan(*t, 0, 1).maxc.store(2);
  chan(*t, 0, 1).c.store(2);
  chan(*t, 0, 2).enabled.store(0);
  for (const auto& client : random_clients(20, 5)) {
    EXPECT_EQ(where(connect_client(*t, client, kWithH)), std::pair(1u, 0u));
  }
  EXPECT_EQ(chan(*t, 0, 1).totalc.load(), 0u);
}

TEST(PolicyHash, AddedChannelTakesItsShareFromTheOthers) {
  // Intent: a channel appended to a hash group of 3 (`create`) takes about a quarter of the
  // clients (at most 1.2/4), taken from every other channel; few others move between old channels.
  auto t = hash_table(3);
  const auto clients = random_clients(20000, 777);
  const auto before = map_clients(*t, clients);
  t->append_channel(0, make_endpoint("127.0.0.1", 999), 0, true);
  const auto after = map_clients(*t, clients);
  int to_new = 0;
  int between_old = 0;
  std::vector<int> taken_from(3);
  for (size_t i = 0; i < clients.size(); ++i) {
    if (after[i] == 3) {
      ++to_new;
      ++taken_from[static_cast<size_t>(before[i])];
    } else if (after[i] != before[i]) {
      ++between_old;
    }
  }
  const double quarter = static_cast<double>(clients.size()) / 4;
  EXPECT_NEAR(to_new, quarter, 0.05 * quarter);
  EXPECT_LE(to_new + between_old, 1.2 * quarter);
  for (const int n : taken_from) EXPECT_NEAR(n, to_new / 3.0, 0.1 * to_new / 3.0);
}

// ---------------------------------------------------------------- weighted round robin

namespace {

// The channels of `count` sequential clients that each connect at once and keep (hold = true)
// or drop their connection.
std::vector<int> sequence_of(core::Table& t, int count, bool hold = false) {
  std::vector<int> order;
  for (int i = 0; i < count; ++i) {
    if (hold) {
      const auto p = connect_client(t);
      order.push_back(p ? static_cast<int>(p->channel) : -1);
    } else {
      order.push_back(short_client(t));
    }
  }
  return order;
}

}  // namespace

TEST(PolicyWeighted, OneToThreeOverFourThousandClients) {
  // Intent: weights 1:3 give 4,000 sequential clients a 1:3 share, within 5% (exact, in fact:
  // every turn of the cycle is taken once per cycle).
  auto t = make_table();
  add_weighted(*t, 0, {1, 3});
  const auto counts = counts_of(sequence_of(*t, 4000), 2);
  expect_shares(counts, {0.25, 0.75}, 0.05);
  EXPECT_EQ(counts, (std::vector<int>{1000, 3000}));
}

TEST(PolicyWeighted, HeavyChannelsTurnsAreSpreadOut) {
  // Intent: the smooth order: weights 5,1,1 give a a b a c a a (nginx's example), and with
  // weights 1:3 every four consecutive clients include the light channel once.
  auto t = make_table();
  add_weighted(*t, 0, {5, 1, 1});
  EXPECT_EQ(sequence_of(*t, 14, true), (std::vector<int>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
  auto u = make_table();
  add_weighted(*u, 0, {1, 3});
  const auto order = sequence_of(*u, 400);
  for (size_t i = 0; i + 4 <= order.size(); ++i) {
    EXPECT_EQ(std::count(order.begin() + static_cast<long>(i), order.begin() + static_cast<long>(i) + 4, 0), 1)
        << "window at " << i;
  }
}

TEST(PolicyWeighted, EqualWeightsAreTheClassicRoundRobin) {
  // Intent: equal weights other than 1 behave exactly like classic round robin, cursor included.
  auto t = make_table();
  add_weighted(*t, 0, {4, 4, 4});
  EXPECT_EQ(sequence_of(*t, 6), (std::vector<int>{0, 1, 2, 0, 1, 2}));
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 1u));
  s.connected(*p);
  EXPECT_EQ(t->groups[0].cursor.load(), 2u);  // just after the channel that answered
}

TEST(PolicyWeighted, FailoverWalksTheGroupByIndexThenTheNextGroup) {
  // Intent: after the weighted pick, failover tries the following channels in index order,
  // wrapping, each once, then the next group. Weights 1,1,2: the cycle is 2, 0, 1, 2.
  auto t = make_table();
  add_weighted(*t, 0, {1, 1, 2});
  add_channels(*t, 1, 1);
  const std::vector<std::pair<uint32_t, uint32_t>> expected{{0, 2}, {0, 0}, {0, 1}, {1, 0}};
  EXPECT_EQ(tries_failing_everywhere(*t, kClient), expected);
  const std::vector<std::pair<uint32_t, uint32_t>> second{{0, 0}, {0, 1}, {0, 2}, {1, 0}};
  EXPECT_EQ(tries_failing_everywhere(*t, kClient), second);
}

TEST(PolicyWeighted, ConnectedLeavesTheCyclePositionAlone) {
  // Intent: in a weighted group the cursor is a position in the cycle, which a connect after a
  // failover does not overwrite with a channel index. Weights 1,1,2: the cycle is 2, 0, 1, 2.
  auto t = make_table();
  add_weighted(*t, 0, {1, 1, 2});
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 2u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 1u));
  s.connected(*p);
  EXPECT_EQ(t->groups[0].cursor.load(), 1u);
  EXPECT_EQ(sequence_of(*t, 3), (std::vector<int>{0, 1, 2}));
}

TEST(PolicyWeighted, UnavailableChannelsTurnsAreSharedByWeight) {
  // Intent: with weights 1,2,3 and channel 2 disabled (or down with checks on), channels 0 and 1
  // share 3,000 clients 1:2; a full channel passes its turns on.
  for (const char* how : {"disabled", "down", "full"}) {
    auto t = make_table();
    add_weighted(*t, 0, {1, 2, 3});
    if (how == std::string_view("disabled")) chan(*t, 0, 2).enabled.store(0);
    if (how == std::string_view("down")) {
      t->header.flags.store(core::kFlagChecks);
      chan(*t, 0, 2).health.store(static_cast<uint32_t>(core::Health::Down));
    }
    if (how == std::string_view("full")) {
      chan(*t, 0, 2).maxc.store(1);
      chan(*t, 0, 2).c.store(1);
    }
    const auto counts = counts_of(sequence_of(*t, 3000), 3);
    EXPECT_EQ(counts[2], 0) << how;
    if (how != std::string_view("full")) {
      EXPECT_EQ(counts, (std::vector<int>{1000, 2000, 0})) << how;
    }
    EXPECT_EQ(counts[0] + counts[1], 3000) << how;
  }
}

// ---------------------------------------------------------------- least connections

namespace {

// A table whose group 0 is a least-connections group with one channel per weight, and whose
// group 1 has one round-robin channel.
std::unique_ptr<core::Table> lc_table(const std::vector<uint32_t>& weights) {
  auto t = make_table();
  add_weighted(*t, 0, weights);
  set_type(*t, 0, core::GroupType::LeastConn);
  add_channels(*t, 1, 1);
  return t;
}

}  // namespace

TEST(PolicyLeastConn, HeldConnectionsSpreadEvenly) {
  // Intent: 10 long-held connections over two equal channels end up 5 and 5, alternating.
  auto t = lc_table({1, 1});
  EXPECT_EQ(sequence_of(*t, 10, true), (std::vector<int>{0, 1, 0, 1, 0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(chan(*t, 0, 0).c.load(), 5u);
  EXPECT_EQ(chan(*t, 0, 1).c.load(), 5u);
}

TEST(PolicyLeastConn, NewConnectionsGoToTheLessLoadedChannel) {
  // Intent: with 4 connections already on channel 0, the next 4 go to channel 1, then they alternate.
  auto t = lc_table({1, 1});
  chan(*t, 0, 0).c.store(4);
  EXPECT_EQ(sequence_of(*t, 8, true), (std::vector<int>{1, 1, 1, 1, 0, 1, 0, 1}));
  EXPECT_EQ(chan(*t, 0, 1).totalc.load(), 6u);
}

TEST(PolicyLeastConn, LoadIsRelativeToWeight) {
  // Intent: weights 1:3 hold connections 1:3 (2 and 6 of 8, then 3 and 9 of 12).
  auto t = lc_table({1, 3});
  sequence_of(*t, 8, true);
  EXPECT_EQ(chan(*t, 0, 0).c.load(), 2u);
  EXPECT_EQ(chan(*t, 0, 1).c.load(), 6u);
  sequence_of(*t, 4, true);
  EXPECT_EQ(chan(*t, 0, 0).c.load(), 3u);
  EXPECT_EQ(chan(*t, 0, 1).c.load(), 9u);
}

TEST(PolicyLeastConn, TiesRotate) {
  // Intent: short connections leave every channel at 0: the ties go round robin.
  auto t = lc_table({1, 1, 1});
  EXPECT_EQ(sequence_of(*t, 7), (std::vector<int>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(PolicyLeastConn, FailoverExcludesTriedChannels) {
  // Intent: with loads 2, 0, 1 a client failing everywhere tries 1, then 2, then 0 (the least
  // loaded untried channel each time, though the failed one is least loaded again), then group 1.
  auto t = lc_table({1, 1, 1});
  chan(*t, 0, 0).c.store(2);
  chan(*t, 0, 2).c.store(1);
  const std::vector<std::pair<uint32_t, uint32_t>> expected{{0, 1}, {0, 2}, {0, 0}, {1, 0}};
  EXPECT_EQ(tries_failing_everywhere(*t, kClient), expected);
  EXPECT_EQ(chan(*t, 0, 0).c.load(), 2u);
  EXPECT_EQ(chan(*t, 0, 1).c.load(), 0u);
  EXPECT_EQ(chan(*t, 0, 2).c.load(), 1u);
}

TEST(PolicyLeastConn, UnusableChannelsAreSkipped) {
  // Intent: disabled, full and (with checks on) down channels are never picked, however idle.
  auto t = lc_table({1, 1, 1, 1});
  chan(*t, 0, 0).enabled.store(0);
  chan(*t, 0, 1).maxc.store(1);
  chan(*t, 0, 1).c.store(1);
  chan(*t, 0, 2).health.store(static_cast<uint32_t>(core::Health::Down));
  chan(*t, 0, 3).c.store(50);
  EXPECT_EQ(short_client(*t), 2);  // checks off: health does not count
  t->header.flags.store(core::kFlagChecks);
  EXPECT_EQ(sequence_of(*t, 3, true), (std::vector<int>{3, 3, 3}));
  chan(*t, 0, 3).enabled.store(0);
  EXPECT_EQ(where(connect_client(*t)), std::pair(1u, 0u));
}

TEST(PolicyLeastConn, ConnectedLeavesTheCursorWhereThePicksPutIt) {
  // Intent: connected() does not move a least-connections cursor back over a later pick: each
  // claim moved it already.
  auto t = lc_table({1, 1, 1});
  core::Selector a(*t, kClient, {});
  core::Selector b(*t, kClient, {});
  const auto pa = a.next();
  const auto pb = b.next();
  EXPECT_EQ(where(pa), std::pair(0u, 0u));
  EXPECT_EQ(where(pb), std::pair(0u, 1u));
  EXPECT_EQ(t->groups[0].cursor.load(), 2u);
  a.connected(*pa);
  b.connected(*pb);
  EXPECT_EQ(t->groups[0].cursor.load(), 2u);
  EXPECT_EQ(short_client(*t), 2);
}

// ---------------------------------------------------------------- corrupt tables

TEST(PolicyCorrupt, HugeChannelCountIsClamped) {
  // Intent: nchannels = 1e9 never indexes past the 64 channels of the group.
  auto t = make_table();
  add_channels(*t, 0, 2);
  t->groups[0].nchannels.store(1000000000);
  for (int i = 0; i < 200; ++i) {
    auto p = connect_client(*t);
    ASSERT_TRUE(p);
    EXPECT_LT(p->channel, 2u);  // the others are empty slots, never enabled
    core::release(*t, p->group, p->channel);
  }
  // Every slot enabled (forged): picks stay below kMaxChannels, the cursor wraps at 64.
  for (uint32_t c = 0; c < core::kMaxChannels; ++c) chan(*t, 0, c).enabled.store(1);
  for (uint32_t i = 0; i < 3 * core::kMaxChannels; ++i) {
    auto p = connect_client(*t);
    ASSERT_TRUE(p);
    EXPECT_LT(p->channel, core::kMaxChannels);
    EXPECT_LT(t->groups[0].cursor.load(), core::kMaxChannels);
  }
  // A hash group (with and without -H) and a least-connections group stay in range too.
  for (const auto type : {core::GroupType::Hash, core::GroupType::LeastConn}) {
    set_type(*t, 0, type);
    for (const auto& client : random_clients(300, 3)) {
      for (const auto opts : {core::SelectorOptions{}, kWithH}) {
        auto p = connect_client(*t, client, opts);
        ASSERT_TRUE(p);
        EXPECT_LT(p->channel, core::kMaxChannels);
        core::release(*t, p->group, p->channel);
      }
    }
  }
}

TEST(PolicyCorrupt, UnknownGroupTypeActsAsRoundRobin) {
  // Intent: type = 77 selects like a round-robin group.
  auto t = make_table();
  add_channels(*t, 0, 3);
  t->groups[0].type.store(77);
  std::vector<int> order;
  for (int i = 0; i < 4; ++i) order.push_back(short_client(*t));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 0}));
}

TEST(PolicyCorrupt, HugeCursorIsTakenModuloAndRepaired) {
  // Intent: cursor = 1e9 starts at 1e9 mod n and is left in range.
  auto t = make_table();
  add_channels(*t, 0, 3);
  t->groups[0].cursor.store(1000000000);  // 1e9 mod 3 = 1
  EXPECT_EQ(short_client(*t), 1);
  EXPECT_EQ(t->groups[0].cursor.load(), 2u);
  t->groups[0].cursor.store(UINT32_MAX);  // mod 3 = 0
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 1u));
  s.connected(*p);
  EXPECT_EQ(t->groups[0].cursor.load(), 2u);
}

TEST(PolicyCorrupt, StuckEndpointSeqGivesAnInvalidEndpointButStillAPick) {
  // Intent: a seqlock stuck odd reads as an invalid endpoint, yet the channel is still picked.
  // (Its connect will fail and failover proceeds; a later assign repairs it.)
  auto t = make_table();
  add_channels(*t, 0, 2);
  chan(*t, 0, 0).endpoint_seq.store(7);
  core::Selector s(*t, kClient, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 0u));
  EXPECT_FALSE(p->endpoint.valid());
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 1u));
  EXPECT_TRUE(p->endpoint.valid());
  chan(*t, 0, 0).set_endpoint(make_endpoint("127.0.0.2", 80));
  EXPECT_EQ(chan(*t, 0, 0).endpoint(), make_endpoint("127.0.0.2", 80));
}

TEST(PolicyCorrupt, GarbageEndpointFamilyReadsAsInvalid) {
  // Intent: endpoint words with an unknown family give an invalid endpoint, not garbage.
  auto t = make_table();
  add_channels(*t, 0, 1);
  chan(*t, 0, 0).endpoint_words[0].store(0xdeadbeefdeadbeefull);
  auto p = connect_client(*t);
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->endpoint.valid());
}

TEST(PolicyCorrupt, HugeConnectionCountsNeverWrap) {
  // Intent: c above maxc or at UINT32_MAX makes the channel unusable instead of wrapping.
  auto t = make_table();
  add_channels(*t, 0, 2);
  chan(*t, 0, 0).maxc.store(5);
  chan(*t, 0, 0).c.store(900);
  chan(*t, 0, 1).c.store(UINT32_MAX);  // maxc 0: "unlimited"
  EXPECT_FALSE(connect_client(*t));
  EXPECT_EQ(chan(*t, 0, 1).c.load(), UINT32_MAX);
  EXPECT_EQ(chan(*t, 0, 1).totalc.load(), 0u);
}

TEST(PolicyCorrupt, ForgedPicksAreIgnored) {
  // Intent: failed/connected/release with out-of-range group or channel touch nothing.
  auto t = make_table();
  add_channels(*t, 0, 2);
  core::Selector s(*t, kClient, {.hash_failover = false, .autodisable = true});
  for (const auto& [g, c] : std::vector<std::pair<uint32_t, uint32_t>>{
           {0, 2}, {0, 64}, {0, UINT32_MAX}, {1, 0}, {32, 0}, {UINT32_MAX, 0}}) {
    const core::Pick p{g, c, {}};
    EXPECT_FALSE(s.failed(p));
    s.connected(p);
    core::release(*t, g, c);
  }
  EXPECT_EQ(t->groups[0].cursor.load(), 0u);
  EXPECT_EQ(chan(*t, 0, 2).enabled.load(), 0u);
  EXPECT_EQ(chan(*t, 0, 2).failures.load(), 0u);
  EXPECT_EQ(short_client(*t), 0);
}

TEST(PolicyCorrupt, ReleaseOnIdleChannelDoesNotWrap) {
  // Intent: a release with no connection held leaves c at 0.
  auto t = make_table();
  add_channels(*t, 0, 1);
  core::release(*t, 0, 0);
  EXPECT_EQ(chan(*t, 0, 0).c.load(), 0u);
}

TEST(PolicyCorrupt, ExtremeWeightsAreHarmless) {
  // Intent: weights 0 (counts as 1) and UINT32_MAX give in-range picks in every group type, and
  // the heavy channel gets nearly every turn of a round-robin group.
  for (const auto type : {core::GroupType::RoundRobin, core::GroupType::Hash, core::GroupType::LeastConn}) {
    auto t = make_table();
    add_channels(*t, 0, 3);
    chan(*t, 0, 0).weight.store(0);
    chan(*t, 0, 1).weight.store(UINT32_MAX);
    set_type(*t, 0, type);
    std::vector<int> counts(3);
    for (const auto& client : random_clients(3000, 8)) {
      for (const auto opts : {core::SelectorOptions{}, kWithH}) {
        auto p = connect_client(*t, client, opts);
        ASSERT_TRUE(p);
        ASSERT_EQ(p->group, 0u);
        ASSERT_LT(p->channel, 3u);
        ++counts[p->channel];
        if (type != core::GroupType::LeastConn) core::release(*t, p->group, p->channel);
      }
    }
    if (type != core::GroupType::LeastConn) {
      EXPECT_GT(counts[1], 5900) << static_cast<int>(type);
    }
  }
}

TEST(PolicyCorrupt, HugeCursorInWeightedAndLeastConnGroups) {
  // Intent: a forged cursor is taken modulo the cycle (weighted) or the group (least
  // connections) and left in range.
  auto t = make_table();
  add_weighted(*t, 0, {1, 3});  // cycle 1, 0, 1, 1
  t->groups[0].cursor.store(UINT32_MAX);  // mod 4 = 3
  EXPECT_EQ(short_client(*t), 1);
  EXPECT_EQ(t->groups[0].cursor.load(), 0u);
  auto u = lc_table({1, 1, 1});
  u->groups[0].cursor.store(1000000000);  // mod 3 = 1
  EXPECT_EQ(short_client(*u), 1);
  EXPECT_EQ(u->groups[0].cursor.load(), 2u);
}

TEST(PolicyCorrupt, HugeConnectionCountsInLeastConnGroups) {
  // Intent: c at UINT32_MAX on an unlimited channel is the most loaded one, never taken (c
  // cannot wrap); a c above maxc makes a channel unusable.
  auto t = lc_table({1, 1, 1});
  chan(*t, 0, 0).c.store(UINT32_MAX);
  chan(*t, 0, 1).maxc.store(3);
  chan(*t, 0, 1).c.store(900);
  chan(*t, 0, 2).c.store(5);
  EXPECT_EQ(where(connect_client(*t)), std::pair(0u, 2u));
  chan(*t, 0, 2).enabled.store(0);
  EXPECT_EQ(where(connect_client(*t)), std::pair(1u, 0u));  // channel 0 is at its limit
  EXPECT_EQ(chan(*t, 0, 0).c.load(), UINT32_MAX);
  EXPECT_EQ(chan(*t, 0, 0).totalc.load(), 0u);
}

TEST(PolicyCorrupt, ForgedPicksAreIgnoredInEveryGroupType) {
  // Intent: connected() with out-of-range picks leaves weighted, hash and least-connections
  // cursors alone.
  for (const auto type : {core::GroupType::RoundRobin, core::GroupType::Hash, core::GroupType::LeastConn}) {
    auto t = make_table();
    add_weighted(*t, 0, {1, 2});
    set_type(*t, 0, type);
    core::Selector s(*t, kClient, {});
    for (const auto& [g, c] : std::vector<std::pair<uint32_t, uint32_t>>{{0, 2}, {0, UINT32_MAX}, {32, 0}}) {
      const core::Pick p{g, c, {}};
      EXPECT_FALSE(s.failed(p));
      s.connected(p);
    }
    EXPECT_EQ(t->groups[0].cursor.load(), 0u);
    EXPECT_GE(short_client(*t), 0);
  }
}

// ---------------------------------------------------------------- concurrency

namespace {

struct Observed {
  std::atomic<uint64_t> picks{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> over_maxc{0};
  std::atomic<uint64_t> refused{0};  // clients no channel would take
  std::array<std::atomic<uint32_t>, 3> max_c{};  // highest c seen on group 0's channels
};

// Records what a pick saw: its channel's c must be within maxc right after the slot was taken.
void observe(core::Table& t, const core::Pick& p, Observed& seen) {
  seen.picks.fetch_add(1, std::memory_order_relaxed);
  auto& ch = t.groups[p.group].channels[p.channel];
  const uint32_t c = ch.c.load(std::memory_order_relaxed);
  if (c > ch.maxc.load(std::memory_order_relaxed)) seen.over_maxc.fetch_add(1, std::memory_order_relaxed);
  if (p.group != 0) return;
  auto& m = seen.max_c[p.channel];
  uint32_t prev = m.load(std::memory_order_relaxed);
  while (c > prev && !m.compare_exchange_weak(prev, c, std::memory_order_relaxed)) {
  }
}

// One client: tries channels until one "answers" (7 in 8 do); returns the connection it holds.
std::optional<core::Pick> one_client(core::Table& t, std::mt19937& rng, Observed& seen) {
  core::Selector s(t, v4_client(static_cast<uint32_t>(rng())), kWithH);
  while (auto p = s.next()) {
    observe(t, *p, seen);
    if (rng() % 8 != 0) {
      s.connected(*p);
      return p;
    }
    s.failed(*p);
    seen.failures.fetch_add(1, std::memory_order_relaxed);
  }
  seen.refused.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

// One worker: 50,000 clients. Connections are held for a while (up to 5 per worker), so
// together the workers keep the table at its capacity and maxc is really contended.
void worker(core::Table& t, unsigned seed, Observed& seen) {
  std::mt19937 rng(seed);
  std::deque<core::Pick> held;
  for (int i = 0; i < 50000; ++i) {
    if (auto p = one_client(t, rng, seen)) held.push_back(*p);
    if (held.size() > 4 || (!held.empty() && rng() % 2 == 0)) {
      core::release(t, held.front().group, held.front().channel);
      held.pop_front();
    }
  }
  for (const auto& p : held) core::release(t, p.group, p.channel);
}

// Runs 4 threads x 50,000 clients on `t` (groups 0..2 in use, group 0 of 3 channels with maxc
// 2) and checks that c never exceeded maxc and every counter is exact.
void expect_exact_under_contention(core::Table& t, uint32_t cursor_limit) {
  Observed seen;
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 4; ++i) threads.emplace_back(worker, std::ref(t), 100 + i, std::ref(seen));
  for (auto& th : threads) th.join();

  EXPECT_EQ(seen.over_maxc.load(), 0u);
  for (const auto& m : seen.max_c) EXPECT_LE(m.load(), 2u);
  uint64_t totalc = 0;
  uint64_t failures = 0;
  for (uint32_t g = 0; g < 3; ++g) {
    for (uint32_t c = 0; c < t.channel_count(g); ++c) {
      EXPECT_EQ(chan(t, g, c).c.load(), 0u) << g << "/" << c;
      totalc += chan(t, g, c).totalc.load();
      failures += chan(t, g, c).failures.load();
    }
  }
  EXPECT_EQ(totalc, seen.picks.load());
  EXPECT_EQ(failures, seen.failures.load());
  // Every client either connected (a pick that did not fail) or was refused.
  EXPECT_EQ(seen.picks.load() - seen.failures.load() + seen.refused.load(), 4u * 50000u);
  EXPECT_GT(seen.refused.load(), 0u);  // the table was full at times: maxc was contended
  EXPECT_LT(t.groups[0].cursor.load(), cursor_limit);
}

}  // namespace

TEST(PolicyConcurrency, ThreadsNeverExceedMaxcAndCountersAreExact) {
  // Intent: 4 threads x 50,000 selectors on one table keep c <= maxc and every counter exact.
  auto t = make_table();
  add_channels(*t, 0, 3, 2);  // round robin, maxc 2
  add_channels(*t, 1, 2, 1);  // hash with -H, maxc 1
  set_type(*t, 1, core::GroupType::Hash);
  add_channels(*t, 2, 1, 1);  // round robin, maxc 1: capacity 9 < 4 threads x up to 5 held
  expect_exact_under_contention(*t, 3);
}

TEST(PolicyConcurrency, WeightedAndLeastConnNeverExceedMaxc) {
  // Intent: the same with a weighted round-robin group, a least-connections group and a
  // weighted hash group.
  auto t = make_table();
  for (const uint32_t w : {1u, 2u, 3u}) add_channels(*t, 0, 1, 2, w);  // weighted, maxc 2: cycle of 6
  for (const uint32_t w : {1u, 3u}) add_channels(*t, 1, 1, 1, w);     // least connections, maxc 1
  set_type(*t, 1, core::GroupType::LeastConn);
  for (const uint32_t w : {2u, 1u}) add_channels(*t, 2, 1, 1, w);     // hash with -H, maxc 1
  set_type(*t, 2, core::GroupType::Hash);
  expect_exact_under_contention(*t, 6);
}

TEST(PolicyConcurrency, RoundRobinSharesEvenlyAcrossThreads) {
  // Intent: 2 threads x 50,000 clients on 3 channels get exactly a third each (CAS cursor).
  auto t = make_table();
  add_channels(*t, 0, 3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&t] {
      for (int k = 0; k < 50000; ++k) short_client(*t);
    });
  }
  for (auto& th : threads) th.join();
  uint64_t sum = 0;
  for (uint32_t c = 0; c < 3; ++c) {
    const uint64_t n = chan(*t, 0, c).totalc.load();
    EXPECT_GE(n, 33333u);
    EXPECT_LE(n, 33334u);
    sum += n;
    EXPECT_EQ(chan(*t, 0, c).c.load(), 0u);
  }
  EXPECT_EQ(sum, 100000u);
}

TEST(PolicyConcurrency, WeightedSharesAreExactAcrossThreads) {
  // Intent: 2 threads x 20,000 clients on weights 1:3 get exactly 10,000 and 30,000: concurrent
  // picks claim distinct turns of the cycle.
  auto t = make_table();
  add_weighted(*t, 0, {1, 3});
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&t] {
      for (int k = 0; k < 20000; ++k) short_client(*t);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(chan(*t, 0, 0).totalc.load(), 10000u);
  EXPECT_EQ(chan(*t, 0, 1).totalc.load(), 30000u);
}

TEST(PolicyConcurrency, LeastConnSpreadsHeldConnectionsAcrossThreads) {
  // Intent: 4 threads each holding 250 connections on two equal least-connections channels end
  // up nearly even (a pick in flight on each thread is all that can unbalance them).
  auto t = lc_table({1, 1});
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&t] {
      for (int k = 0; k < 250; ++k) connect_client(*t);
    });
  }
  for (auto& th : threads) th.join();
  const uint32_t c0 = chan(*t, 0, 0).c.load();
  const uint32_t c1 = chan(*t, 0, 1).c.load();
  EXPECT_EQ(c0 + c1, 1000u);
  EXPECT_LE(c0 > c1 ? c0 - c1 : c1 - c0, 8u);
}
