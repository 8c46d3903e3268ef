#include "core/policy.h"

#include "core/least_conn.h"
#include "core/maglev.h"
#include "core/weighted.h"

namespace balance::core {

namespace {

// Per worker thread: the Maglev table of each hash group and the weighted cycle of each
// round-robin group. Each is a pure function of its group's channels and weights, checked
// against the table on every use, so every thread (and every process) derives the same ones.
thread_local MaglevCache t_maglev;
thread_local SwrrCache t_swrr;

constexpr uint64_t bit(uint32_t i) { return uint64_t{1} << i; }  // i < kMaxChannels

// The channel (g, c) if it exists in the table, else nullptr. Bounds come from channel_count(),
// which clamps, so a forged pick or a corrupt segment never indexes out of range.
Channel* channel_at(Table& table, uint32_t g, uint32_t c) {
  if (g >= kMaxGroups || c >= table.channel_count(g)) return nullptr;
  return &table.groups[g].channels[c];
}

}  // namespace

Selector::Selector(Table& table, const Endpoint& client, SelectorOptions options)
    : table_(table), key_(maglev_client_key(client)), options_(options) {}

std::optional<Pick> Selector::next() {
  while (group_ < kMaxGroups) {
    if (auto pick = scan_group()) return pick;
    ++group_;  // this group has nothing (more) to offer: the following one
    in_group_ = false;
  }
  return std::nullopt;  // group_ stays at kMaxGroups: every later call answers nullopt too
}

// Starts or continues the walk of group_ by the group's type, latched when the walk starts (a
// `hash`/`rr` command meanwhile takes effect from the next group or client). Returns the next
// channel whose slot it took, or nullopt when the group is exhausted.
std::optional<Pick> Selector::scan_group() {
  const uint32_t n = table_.channel_count(group_);
  if (n == 0) return std::nullopt;
  const bool fresh = !in_group_;
  if (fresh) {
    in_group_ = true;
    kind_ = table_.group_type(group_);
    steps_ = 0;
    tried_ = 0;
  }
  switch (kind_) {
    case GroupType::Hash: return next_hashed(n);
    case GroupType::LeastConn: return next_least_loaded(n);
    case GroupType::RoundRobin: break;
  }
  return next_round_robin(n, fresh);
}

// Round robin: the group's next turn (claimed from the shared cursor), then on failure the
// channels after it in index order, wrapping, each looked at once.
std::optional<Pick> Selector::next_round_robin(uint32_t n, bool fresh) {
  if (fresh) {
    const SwrrSequence& seq = t_swrr.sequence_for(table_, group_);
    const auto first = swrr_claim(table_.groups[group_], seq, table_.checks_on());
    if (!first) return std::nullopt;
    start_ = *first;  // if its slot filled meanwhile, the loop below goes on to the next ones
  }
  while (steps_ < n) {
    // n is re-read on every call (`create` may append); the modulo keeps idx in range anyway.
    const uint32_t idx = (start_ + steps_) % n;
    ++steps_;
    if (auto pick = take(group_, idx)) return pick;
  }
  return std::nullopt;
}

// Hash: the client's channel in the group's Maglev table. Without -H its own slot's channel is
// the only candidate, usable or not. With -H, the first channel of the client's probe sequence
// among the usable ones not yet tried: a client whose channel is usable keeps it, the others'
// clients spread by weight, and each channel is tried at most once.
std::optional<Pick> Selector::next_hashed(uint32_t n) {
  const MaglevTable& mt = t_maglev.table_for(table_, group_);
  if (!options_.hash_failover) {
    if (tried_ != 0) return std::nullopt;  // its one candidate was tried
    const auto idx = mt.primary(key_);
    if (!idx || *idx >= kMaxChannels) return std::nullopt;
    tried_ |= bit(*idx);
    return take(group_, *idx);
  }
  const Group& group = table_.groups[group_];
  for (;;) {  // each round adds a channel to tried_: at most kMaxChannels rounds
    const auto idx = mt.lookup(key_, usable_mask(group, n, table_.checks_on()) & ~tried_);
    if (!idx || *idx >= kMaxChannels) return std::nullopt;
    tried_ |= bit(*idx);
    if (auto pick = take(group_, *idx)) return pick;  // else it filled meanwhile: look again
  }
}

// Least connections: the least loaded usable channel not yet tried (ties by round robin from
// the group's cursor, which the claim moves).
std::optional<Pick> Selector::next_least_loaded(uint32_t n) {
  for (;;) {  // each round adds a channel to tried_: at most kMaxChannels rounds
    const auto idx = least_conn_claim(table_.groups[group_], n, table_.checks_on(), tried_);
    if (!idx || *idx >= kMaxChannels) return std::nullopt;
    tried_ |= bit(*idx);
    if (auto pick = take(group_, *idx)) return pick;  // else it filled meanwhile: look again
  }
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
  switch (table_.group_type(p.group)) {
    case GroupType::Hash: break;  // classic: the cursor (unused by hash picks) moves too
    case GroupType::LeastConn: return;  // every claim moved the cursor after its pick already
    case GroupType::RoundRobin: {
      // The first pick of a round-robin walk already moved the cursor just after itself when
      // it was claimed. Storing it again could move the cursor back over picks other threads
      // made since (connects finish out of order); for sequential clients it would change
      // nothing. In a weighted group the cursor is a position in the cycle, not a channel.
      const bool first_pick = in_group_ && kind_ == GroupType::RoundRobin && p.group == group_ &&
                              p.channel == start_ && steps_ == 1;
      if (first_pick || !t_swrr.sequence_for(table_, p.group).plain()) return;
      break;
    }
  }
  table_.groups[p.group].cursor.store((p.channel + 1) % n, std::memory_order_relaxed);
}

void release(Table& table, uint32_t group, uint32_t channel) {
  if (Channel* ch = channel_at(table, group, channel)) ch->release();
}

}  // namespace balance::core
