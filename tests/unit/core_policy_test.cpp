// Tests of the selection policy (src/core/policy.h): round robin, failover, maxc, hash, -H, -a,
// corrupt tables and concurrent selectors on one table.
#include "core/policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

namespace core = balance::core;

namespace {

constexpr uint16_t kBasePort = 1000;  // channel (g, c) listens on kBasePort + 100 * g + c

core::Endpoint make_endpoint(const char* text, uint16_t port) {
  core::Endpoint e;
  e.port = port;
  if (inet_pton(AF_INET, text, e.addr.data()) == 1) {
    e.family = AF_INET;
  } else if (inet_pton(AF_INET6, text, e.addr.data()) == 1) {
    e.family = AF_INET6;
  }
  return e;
}

std::unique_ptr<core::Table> make_table() {
  auto table = std::make_unique<core::Table>();
  table->init(1234, 0, 0);
  return table;
}

// Appends `count` channels to group g, all with the given maxc.
void add_channels(core::Table& t, uint32_t g, uint32_t count, uint32_t maxc = 0) {
  for (uint32_t i = 0; i < count; ++i) {
    const auto port = static_cast<uint16_t>(kBasePort + 100 * g + t.channel_count(g));
    ASSERT_GE(t.append_channel(g, make_endpoint("127.0.0.1", port), maxc, true), 0);
  }
}

void set_type(core::Table& t, uint32_t g, core::GroupType type) {
  t.groups[g].type.store(static_cast<uint32_t>(type));
}

core::Channel& chan(core::Table& t, uint32_t g, uint32_t c) { return t.groups[g].channels[c]; }

// One client that connects at its first try and keeps the connection (no release).
std::optional<core::Pick> connect_client(core::Table& t, uint32_t hash = 0, core::SelectorOptions opts = {}) {
  core::Selector s(t, hash, opts);
  auto p = s.next();
  if (p) s.connected(*p);
  return p;
}

// One client that connects at its first try and disconnects at once; returns its channel.
int short_client(core::Table& t, uint32_t hash = 0, core::SelectorOptions opts = {}) {
  auto p = connect_client(t, hash, opts);
  if (!p) return -1;
  core::release(t, p->group, p->channel);
  return static_cast<int>(p->channel);
}

// Where a pick landed, as a comparable value.
std::pair<uint32_t, uint32_t> where(const std::optional<core::Pick>& p) {
  return p ? std::pair{p->group, p->channel} : std::pair{UINT32_MAX, UINT32_MAX};
}

}  // namespace

// ---------------------------------------------------------------- round robin

TEST(PolicyRoundRobin, NineSequentialClientsAlternateOverThreeChannels) {
  // Intent: sequential clients go 0,1,2,0,1,2,... and each pick carries its channel's address.
  auto t = make_table();
  add_channels(*t, 0, 3);
  for (uint32_t i = 0; i < 9; ++i) {
    core::Selector s(*t, 0, {});
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

TEST(PolicyRoundRobin, LeastConnGroupIsRoundRobinForNow) {
  // Intent: the reserved LeastConn type selects like round robin.
  auto t = make_table();
  add_channels(*t, 0, 3);
  set_type(*t, 0, core::GroupType::LeastConn);
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) order.push_back(short_client(*t));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 0, 1, 2}));
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
  core::Selector s(*t, 0, {});
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
  core::Selector s(*t, 0, {});
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
  core::Selector s(*t, 0, {});
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
  core::Selector s(*t, 0, {});
  EXPECT_FALSE(s.next());
  EXPECT_FALSE(s.next());
  EXPECT_EQ(chan(*t, 0, 0).totalc.load() + chan(*t, 0, 1).totalc.load() + chan(*t, 1, 0).totalc.load(), 0u);
  auto empty = make_table();
  core::Selector on_empty_table(*empty, 0, {});
  EXPECT_FALSE(on_empty_table.next());
}

TEST(PolicyRoundRobin, TotalcCountsEveryTryAndCReturnsToZero) {
  // Intent: each try counts in totalc; failed() and release() give every slot back.
  auto t = make_table();
  add_channels(*t, 0, 3);
  add_channels(*t, 1, 1);
  core::Selector s(*t, 0, {});
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
  core::Selector a(*t, 0, opts);
  core::Selector b(*t, 0, opts);
  auto pa = a.next();
  EXPECT_EQ(where(pa), std::pair(0u, 0u));
  EXPECT_TRUE(a.failed(*pa));
  EXPECT_EQ(chan(*t, 0, 0).enabled.load(), 0u);
  auto pa2 = a.next();
  EXPECT_EQ(where(pa2), std::pair(0u, 1u));
  a.connected(*pa2);
  auto pb = b.next();  // a connected to 1 before b's first next(): the cursor is at 2
  EXPECT_EQ(where(pb), std::pair(0u, 2u));
  for (int i = 0; i < 6; ++i) EXPECT_NE(short_client(*t, 0, opts), 0);
  EXPECT_EQ(chan(*t, 0, 0).totalc.load(), 1u);
}

TEST(PolicyRoundRobin, AutodisableReportsOnlyTheCallThatDisabled) {
  // Intent: two clients failing on the same channel: only the first failed() returns true.
  auto t = make_table();
  add_channels(*t, 0, 1);
  const core::SelectorOptions opts{.hash_failover = false, .autodisable = true};
  core::Selector a(*t, 0, opts);
  core::Selector b(*t, 0, opts);
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
  core::Selector s(*t, 0, {});
  auto p = s.next();
  EXPECT_FALSE(s.failed(*p));
  EXPECT_EQ(chan(*t, 0, 0).enabled.load(), 1u);
}

TEST(PolicyRoundRobin, CursorMovesAfterTheFailoverChannelThatAnswered) {
  // Intent: after a failover, the cursor is just after the channel that answered.
  auto t = make_table();
  add_channels(*t, 0, 4);
  core::Selector s(*t, 0, {});
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
  core::Selector s(*t, 0, {});
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
  core::Selector a(*t, 0, {});
  core::Selector b(*t, 0, {});
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
  core::Selector s(*t, 0, {});
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

// ---------------------------------------------------------------- hash

TEST(PolicyHash, KnownValuesComputedByHand) {
  // Intent: client_hash follows rc = (signed char)byte + 31 * rc over the raw address bytes.
  // 127.0.0.1: ((127*31 + 0)*31 + 0)*31 + 1 = 3783458.
  EXPECT_EQ(core::client_hash(make_endpoint("127.0.0.1", 1)), 3783458u);
  // 10.0.0.1: 10*31^3 + 1 = 297911.
  EXPECT_EQ(core::client_hash(make_endpoint("10.0.0.1", 1)), 297911u);
  // 192.168.1.1 with signed bytes -64, -88, 1, 1: ((-64*31 - 88)*31 + 1)*31 + 1 = -1991160,
  // i.e. 2^32 - 1991160.
  EXPECT_EQ(core::client_hash(make_endpoint("192.168.1.1", 1)), 4292976136u);
  // 255.255.255.255: -(31^3 + 31^2 + 31 + 1) = -30784, i.e. 2^32 - 30784.
  EXPECT_EQ(core::client_hash(make_endpoint("255.255.255.255", 1)), 4294936512u);
  // ::1: fifteen zero bytes then 1.
  EXPECT_EQ(core::client_hash(make_endpoint("::1", 1)), 1u);
  // 2001:db8::1: (32*31^15 + 1*31^14 + 13*31^13 - 72*31^12 + 1) mod 2^32.
  EXPECT_EQ(core::client_hash(make_endpoint("2001:db8::1", 1)), 4018179821u);
  // The port plays no part; an invalid endpoint folds no bytes.
  EXPECT_EQ(core::client_hash(make_endpoint("127.0.0.1", 9)), 3783458u);
  EXPECT_EQ(core::client_hash(core::Endpoint{}), 0u);
}

TEST(PolicyHash, Ipv4MappedClientHashesAsIpv4) {
  // Intent: a dual-stack client ::ffff:a.b.c.d hashes like a.b.c.d.
  EXPECT_EQ(core::client_hash(make_endpoint("::ffff:192.0.2.7", 5)), core::client_hash(make_endpoint("192.0.2.7", 6)));
  EXPECT_EQ(core::client_hash(make_endpoint("::ffff:127.0.0.1", 5)), 3783458u);
  // Only the exact ::ffff:0:0/96 prefix is unmapped.
  EXPECT_NE(core::client_hash(make_endpoint("::fffe:127.0.0.1", 5)), 3783458u);
}

TEST(PolicyHash, SameClientKeepsItsChannel) {
  // Intent: 1,000 connections from one client all land on the same channel: hash mod n.
  auto t = make_table();
  add_channels(*t, 0, 4);
  set_type(*t, 0, core::GroupType::Hash);
  for (const char* addr : {"198.51.100.23", "2001:db8:42::17"}) {
    const uint32_t h = core::client_hash(make_endpoint(addr, 40000));
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(short_client(*t, h), static_cast<int>(h % 4)) << addr;
  }
}

TEST(PolicyHash, HashGroupIgnoresTheCursor) {
  // Intent: picks in a hash group do not depend on the round-robin cursor.
  auto t = make_table();
  add_channels(*t, 0, 4);
  set_type(*t, 0, core::GroupType::Hash);
  t->groups[0].cursor.store(3);
  EXPECT_EQ(short_client(*t, 5), 1);
  EXPECT_EQ(short_client(*t, 5), 1);
}

namespace {

// Counts how many of `clients` land on each of the 4 channels of a hash group.
std::array<int, 4> spread(const std::vector<core::Endpoint>& clients) {
  auto t = make_table();
  add_channels(*t, 0, 4);
  set_type(*t, 0, core::GroupType::Hash);
  std::array<int, 4> count{};
  for (const auto& c : clients) {
    const int got = short_client(*t, core::client_hash(c));
    if (got >= 0) ++count[static_cast<size_t>(got)];
  }
  return count;
}

}  // namespace

TEST(PolicyHash, SpreadsIpv4ClientsOverFourChannels) {
  // Intent: 10,000 synthetic IPv4 clients split roughly evenly (each channel 20%..30%).
  std::mt19937 rng(12345);  // fixed seed: the test is deterministic
  std::vector<core::Endpoint> clients;
  for (int i = 0; i < 10000; ++i) {
    core::Endpoint e;
    e.family = AF_INET;
    const auto a = static_cast<uint32_t>(rng());
    for (size_t b = 0; b < 4; ++b) e.addr[b] = static_cast<uint8_t>(a >> (8 * b));
    clients.push_back(e);
  }
  for (int n : spread(clients)) {
    EXPECT_GT(n, 2000);
    EXPECT_LT(n, 3000);
  }
}

TEST(PolicyHash, SpreadsSequentialIpv4ClientsOverFourChannels) {
  // Intent: a block of consecutive addresses (10.0.0.0/18 slice) also spreads evenly.
  std::vector<core::Endpoint> clients;
  for (uint32_t i = 0; i < 10000; ++i) {
    core::Endpoint e;
    e.family = AF_INET;
    e.addr[0] = 10;
    e.addr[2] = static_cast<uint8_t>(i >> 8);
    e.addr[3] = static_cast<uint8_t>(i);
    clients.push_back(e);
  }
  for (int n : spread(clients)) {
    EXPECT_GT(n, 2000);
    EXPECT_LT(n, 3000);
  }
}

TEST(PolicyHash, SpreadsIpv6ClientsOverFourChannels) {
  // Intent: 10,000 synthetic IPv6 clients in 2001:db8::/32 split roughly evenly.
  std::mt19937 rng(54321);
  std::vector<core::Endpoint> clients;
  for (int i = 0; i < 10000; ++i) {
    core::Endpoint e = make_endpoint("2001:db8::", 0);
    for (size_t b = 4; b < 16; ++b) e.addr[b] = static_cast<uint8_t>(rng());
    clients.push_back(e);
  }
  for (int n : spread(clients)) {
    EXPECT_GT(n, 2000);
    EXPECT_LT(n, 3000);
  }
}

TEST(PolicyHash, WithoutHUnusableHashedChannelGoesToNextGroup) {
  // Intent: without -H a disabled or full hashed channel sends the client to the next group.
  auto t = make_table();
  add_channels(*t, 0, 4);
  set_type(*t, 0, core::GroupType::Hash);
  add_channels(*t, 1, 1);
  const uint32_t h = 6;  // channel 2
  chan(*t, 0, 2).enabled.store(0);
  EXPECT_EQ(where(connect_client(*t, h)), std::pair(1u, 0u));
  chan(*t, 0, 2).enabled.store(1);
  chan(*t, 0, 2).maxc.store(1);
  EXPECT_EQ(where(connect_client(*t, h)), std::pair(0u, 2u));
  EXPECT_EQ(where(connect_client(*t, h)), std::pair(1u, 0u));  // full now
  EXPECT_EQ(chan(*t, 0, 3).totalc.load(), 0u);
}

TEST(PolicyHash, WithoutHFailureGoesToNextGroup) {
  // Intent: without -H a failed hashed channel is the only one tried in its group.
  auto t = make_table();
  add_channels(*t, 0, 4);
  set_type(*t, 0, core::GroupType::Hash);
  add_channels(*t, 1, 1);
  core::Selector s(*t, 1, {});
  auto p = s.next();
  EXPECT_EQ(where(p), std::pair(0u, 1u));
  s.failed(*p);
  p = s.next();
  EXPECT_EQ(where(p), std::pair(1u, 0u));
  s.failed(*p);
  EXPECT_FALSE(s.next());
}

TEST(PolicyHash, WithHUnusableHashedChannelScansForward) {
  // Intent: with -H the next usable channel after the hashed one (wrapping) is used.
  auto t = make_table();
  add_channels(*t, 0, 4);
  set_type(*t, 0, core::GroupType::Hash);
  add_channels(*t, 1, 1);
  const core::SelectorOptions opts{.hash_failover = true, .autodisable = false};
  chan(*t, 0, 3).enabled.store(0);
  EXPECT_EQ(where(connect_client(*t, 3, opts)), std::pair(0u, 0u));  // wraps
  chan(*t, 0, 0).enabled.store(0);
  EXPECT_EQ(where(connect_client(*t, 3, opts)), std::pair(0u, 1u));
  chan(*t, 0, 1).enabled.store(0);
  chan(*t, 0, 2).enabled.store(0);
  EXPECT_EQ(where(connect_client(*t, 3, opts)), std::pair(1u, 0u));
}

TEST(PolicyHash, WithHFailoverWalksTheGroupThenTheNextGroup) {
  // Intent: with -H failures walk the hash group from the hashed channel, wrapping, then move on.
  auto t = make_table();
  add_channels(*t, 0, 3);
  set_type(*t, 0, core::GroupType::Hash);
  add_channels(*t, 1, 1);
  core::Selector s(*t, 4, {.hash_failover = true, .autodisable = false});  // 4 mod 3 = 1
  std::vector<std::pair<uint32_t, uint32_t>> tried;
  while (auto p = s.next()) {
    tried.push_back(where(p));
    s.failed(*p);
  }
  const std::vector<std::pair<uint32_t, uint32_t>> expected{{0, 1}, {0, 2}, {0, 0}, {1, 0}};
  EXPECT_EQ(tried, expected);
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
  set_type(*t, 0, core::GroupType::Hash);
  EXPECT_EQ(where(connect_client(*t, UINT32_MAX)), std::pair(0u, UINT32_MAX % core::kMaxChannels));
}

TEST(PolicyCorrupt, UnknownGroupTypeActsAsRoundRobin) {
  // Intent: type = 77 selects like a round-robin group.
  auto t = make_table();
  add_channels(*t, 0, 3);
  t->groups[0].type.store(77);
  std::vector<int> order;
  for (int i = 0; i < 4; ++i) order.push_back(short_client(*t, 2));
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
  core::Selector s(*t, 0, {});
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
  core::Selector s(*t, 0, {});
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
  core::Selector s(*t, 0, {.hash_failover = false, .autodisable = true});
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
  core::Selector s(t, static_cast<uint32_t>(rng()), {.hash_failover = true, .autodisable = false});
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

}  // namespace

TEST(PolicyConcurrency, ThreadsNeverExceedMaxcAndCountersAreExact) {
  // Intent: 4 threads x 50,000 selectors on one table keep c <= maxc and every counter exact.
  auto t = make_table();
  add_channels(*t, 0, 3, 2);  // round robin, maxc 2
  add_channels(*t, 1, 2, 1);  // hash with -H, maxc 1
  set_type(*t, 1, core::GroupType::Hash);
  add_channels(*t, 2, 1, 1);  // round robin, maxc 1: capacity 9 < 4 threads x up to 5 held
  Observed seen;
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 4; ++i) threads.emplace_back(worker, std::ref(*t), 100 + i, std::ref(seen));
  for (auto& th : threads) th.join();

  EXPECT_EQ(seen.over_maxc.load(), 0u);
  for (const auto& m : seen.max_c) EXPECT_LE(m.load(), 2u);
  uint64_t totalc = 0;
  uint64_t failures = 0;
  for (uint32_t g = 0; g < 3; ++g) {
    for (uint32_t c = 0; c < t->channel_count(g); ++c) {
      EXPECT_EQ(chan(*t, g, c).c.load(), 0u) << g << "/" << c;
      totalc += chan(*t, g, c).totalc.load();
      failures += chan(*t, g, c).failures.load();
    }
  }
  EXPECT_EQ(totalc, seen.picks.load());
  EXPECT_EQ(failures, seen.failures.load());
  // Every client either connected (a pick that did not fail) or was refused.
  EXPECT_EQ(seen.picks.load() - seen.failures.load() + seen.refused.load(), 4u * 50000u);
  EXPECT_GT(seen.refused.load(), 0u);  // the table was full at times: maxc was contended
  EXPECT_LT(t->groups[0].cursor.load(), 3u);
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
