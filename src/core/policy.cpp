#include "core/policy.h"

#include <netinet/in.h>

#include <cstddef>

namespace balance::core {

namespace {

// The channel (g, c) if it exists in the table, else nullptr. Bounds come from channel_count(),
// which clamps, so a forged pick or a corrupt segment never indexes out of range.
Channel* channel_at(Table& table, uint32_t g, uint32_t c) {
  if (g >= kMaxGroups || c >= table.channel_count(g)) return nullptr;
  return &table.groups[g].channels[c];
}

// The first usable channel of `group` looking from `from` onwards (wrapping), or nullopt.
std::optional<uint32_t> first_usable(const Group& group, uint32_t from, uint32_t n, bool checks_on) {
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t idx = (from + k) % n;
    if (group.channels[idx].usable(checks_on)) return idx;
  }
  return std::nullopt;
}

// Round robin: finds the first usable channel from the group's cursor and moves the cursor just
// after it. The move is a compare-exchange from the value the scan started at, so concurrent
// selectors each advance it exactly once and never pick from a stale cursor: a compare-exchange
// always sees the latest value, a failed one means someone moved it, and the scan is redone.
// Relaxed order suffices: the cursor publishes no other data. Returns the channel, or nullopt
// when none is usable. The caller still has to take the channel's slot.
std::optional<uint32_t> claim_cursor(Group& group, uint32_t n, bool checks_on) {
  uint32_t cur = group.cursor.load(std::memory_order_relaxed);
  for (;;) {
    const auto idx = first_usable(group, cur % n, n, checks_on);  // cur may be corrupt: mod n
    if (!idx) return std::nullopt;
    if (group.cursor.compare_exchange_weak(cur, (*idx + 1) % n, std::memory_order_relaxed)) return idx;
  }
}

}  // namespace

uint32_t client_hash(const Endpoint& client) {
  const Endpoint e = client.unmapped();
  const std::size_t len = e.family == AF_INET ? 4 : e.family == AF_INET6 ? 16 : 0;
  uint32_t rc = 0;
  for (std::size_t i = 0; i < len; ++i) {
    // The classic code folds plain (signed) chars: a byte >= 0x80 adds a negative value,
    // which in unsigned arithmetic wraps modulo 2^32.
    const auto byte = static_cast<int8_t>(e.addr[i]);
    rc = static_cast<uint32_t>(static_cast<int32_t>(byte)) + 31u * rc;
  }
  return rc;
}

Selector::Selector(Table& table, uint32_t client_hash, SelectorOptions options)
    : table_(table), hash_(client_hash), options_(options) {}

std::optional<Pick> Selector::next() {
  while (group_ < kMaxGroups) {
    if (auto pick = scan_group()) return pick;
    ++group_;  // this group has nothing (more) to offer: the following one
    in_group_ = false;
  }
  return std::nullopt;  // group_ stays at kMaxGroups: every later call answers nullopt too
}

// Starts or continues the walk of group_. A walk looks at each channel of the group at most once,
// from start_ onwards (wrapping); a hash group without -H looks at its hashed channel only.
// Returns the next channel whose slot it took, or nullopt when the group is exhausted.
std::optional<Pick> Selector::scan_group() {
  const uint32_t n = table_.channel_count(group_);
  if (n == 0) return std::nullopt;
  if (!in_group_) {
    in_group_ = true;
    steps_ = 0;
    if (table_.group_type(group_) == GroupType::Hash) {
      start_ = hash_ % n;
      single_ = !options_.hash_failover;
    } else {  // RoundRobin, and LeastConn (treated as round robin for now)
      single_ = false;
      const auto first = claim_cursor(table_.groups[group_], n, table_.checks_on());
      if (!first) return std::nullopt;
      start_ = *first;  // if its slot filled meanwhile, the loop below goes on to the next ones
    }
  }
  const uint32_t limit = single_ ? 1 : n;
  while (steps_ < limit) {
    // n is re-read on every call (`create` may append); the modulo keeps idx in range anyway.
    const uint32_t idx = (start_ + steps_) % n;
    ++steps_;
    if (auto pick = take(group_, idx)) return pick;
  }
  return std::nullopt;
}

// Takes a slot on channel (g, idx) if it is usable; the endpoint is read now, even when invalid
// (a corrupt address makes the connect fail, and failover proceeds).
std::optional<Pick> Selector::take(uint32_t g, uint32_t idx) {
  Channel* ch = channel_at(table_, g, idx);
  if (ch == nullptr || !ch->usable(table_.checks_on()) || !ch->try_acquire()) return std::nullopt;
  return Pick{g, idx, ch->endpoint()};
}

bool Selector::failed(const Pick& p) {
  Channel* ch = channel_at(table_, p.group, p.channel);
  if (ch == nullptr) return false;
  ch->release();
  ch->failures.fetch_add(1, std::memory_order_relaxed);
  if (!options_.autodisable) return false;
  // exchange, not a compare with 1: any non-zero value means enabled, even a corrupt one.
  return ch->enabled.exchange(0, std::memory_order_relaxed) != 0;
}

void Selector::connected(const Pick& p) {
  const uint32_t n = table_.channel_count(p.group);
  if (p.group >= kMaxGroups || p.channel >= n) return;
  // The first pick of a round-robin walk already moved the cursor just after itself when it was
  // claimed. Storing it again could move the cursor back over picks other threads made since
  // (connects finish out of order); for sequential clients it would change nothing.
  const bool round_robin = table_.group_type(p.group) != GroupType::Hash;
  const bool first_pick = in_group_ && p.group == group_ && p.channel == start_ && steps_ == 1;
  if (round_robin && first_pick) return;
  table_.groups[p.group].cursor.store((p.channel + 1) % n, std::memory_order_relaxed);
}

void release(Table& table, uint32_t group, uint32_t channel) {
  if (Channel* ch = channel_at(table, group, channel)) ch->release();
}

}  // namespace balance::core
