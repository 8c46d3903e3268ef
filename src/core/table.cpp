#include "core/table.h"

#include <cstring>
#include <type_traits>

#include "version.h"

namespace balance::core {

static_assert(std::is_trivially_copyable_v<Endpoint>);

Endpoint Channel::endpoint() const {
  // A live writer finishes in nanoseconds; a seq stuck odd means a corrupt segment, so the
  // retries are bounded and the answer is then "no address" (the connect fails, we fail over).
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const uint32_t before = endpoint_seq.load(std::memory_order_acquire);
    if (before & 1u) continue;
    // Acquire loads of the words (not a fence: GCC rejects fences under TSan, which cannot see
    // them): reading any word of a write in progress makes the re-read below see its odd seq.
    uint64_t words[3];
    for (int i = 0; i < 3; ++i) words[i] = endpoint_words[i].load(std::memory_order_acquire);
    if (endpoint_seq.load(std::memory_order_relaxed) == before) {
      Endpoint e;
      std::memcpy(&e, words, sizeof e);
      if (e.family != AF_INET && e.family != AF_INET6) return Endpoint{};
      return e;
    }
  }
  return Endpoint{};
}

void Channel::set_endpoint(const Endpoint& e) {
  uint64_t words[3];
  std::memcpy(words, &e, sizeof words);
  // Odd while writing, even when done. A seq left odd by a writer that died mid-write (or a
  // corrupt segment) is taken as "writing" as is, so this write makes it even again.
  const uint32_t writing = endpoint_seq.load(std::memory_order_relaxed) | 1u;
  endpoint_seq.store(writing, std::memory_order_relaxed);
  // Release stores keep the odd seq ordered before each word (see endpoint()).
  for (int i = 0; i < 3; ++i) endpoint_words[i].store(words[i], std::memory_order_release);
  endpoint_seq.store(writing + 1, std::memory_order_release);
}

bool Channel::usable(bool checks_on) const {
  if (enabled.load(std::memory_order_relaxed) == 0) return false;
  if (checks_on && health.load(std::memory_order_relaxed) != static_cast<uint32_t>(Health::Up)) return false;
  const uint32_t limit = maxc.load(std::memory_order_relaxed);
  return limit == 0 || c.load(std::memory_order_relaxed) < limit;
}

bool Channel::try_acquire() {
  uint32_t cur = c.load(std::memory_order_relaxed);
  for (;;) {
    const uint32_t limit = maxc.load(std::memory_order_relaxed);
    if (limit != 0 && cur >= limit) return false;
    if (cur == UINT32_MAX) return false;  // unlimited, but c must not wrap (corrupt segment)
    if (c.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) break;
  }
  totalc.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Channel::release() {
  uint32_t cur = c.load(std::memory_order_relaxed);
  while (cur != 0 && !c.compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) {
  }
}

void Channel::reset_counters() {
  totalc.store(0, std::memory_order_relaxed);
  sent.store(0, std::memory_order_relaxed);
  rcvd.store(0, std::memory_order_relaxed);
}

void Table::init(int32_t master_pid, uint64_t master_start_ticks, int64_t start_time) {
  std::memcpy(header.magic, kMagic, sizeof header.magic);
  header.layout_version = kLayoutVersion;
  header.table_size = sizeof(Table);
  header.max_groups = kMaxGroups;
  header.max_channels = kMaxChannels;
  std::memset(header.program_version, 0, sizeof header.program_version);
  std::strncpy(header.program_version, kVersion, sizeof header.program_version - 1);
  header.master_pid.store(master_pid);
  header.grace_s.store(0);
  header.master_start_ticks = master_start_ticks;
  header.start_time = start_time;
  header.flags.store(0);
  header.threads.store(0);
  header.accepted_total.store(0);
  header.refused_total.store(0);
  for (auto& g : groups) {
    g.type.store(static_cast<uint32_t>(GroupType::RoundRobin));
    g.nchannels.store(0);
    g.cursor.store(0);
    for (auto& ch : g.channels) {
      ch.endpoint_seq.store(0);
      ch.set_endpoint(Endpoint{});
      ch.enabled.store(0);
      ch.maxc.store(0);
      ch.c.store(0);
      ch.weight.store(1);
      ch.health.store(static_cast<uint32_t>(Health::Up));
      ch.totalc.store(0);
      ch.failures.store(0);
      ch.sent.store(0);
      ch.rcvd.store(0);
      ch.swrr_current.store(0);
      ch.hash_pending.store(0);
    }
  }
}

bool Table::header_valid() const {
  return std::memcmp(header.magic, kMagic, sizeof kMagic) == 0 && header.layout_version == kLayoutVersion &&
         header.table_size == sizeof(Table) && header.max_groups == kMaxGroups &&
         header.max_channels == kMaxChannels;
}

uint32_t Table::channel_count(uint32_t g) const {
  if (g >= kMaxGroups) return 0;
  const uint32_t n = groups[g].nchannels.load(std::memory_order_acquire);
  return n > kMaxChannels ? kMaxChannels : n;
}

GroupType Table::group_type(uint32_t g) const {
  if (g >= kMaxGroups) return GroupType::RoundRobin;
  const uint32_t t = groups[g].type.load(std::memory_order_relaxed);
  return t <= static_cast<uint32_t>(GroupType::LeastConn) ? static_cast<GroupType>(t) : GroupType::RoundRobin;
}

int Table::append_channel(uint32_t g, const Endpoint& e, uint32_t maxc, bool enabled, uint32_t weight) {
  const uint32_t n = channel_count(g);
  if (g >= kMaxGroups || n >= kMaxChannels) return -1;
  Channel& ch = groups[g].channels[n];
  ch.set_endpoint(e);
  ch.enabled.store(enabled ? 1 : 0, std::memory_order_relaxed);
  ch.maxc.store(maxc, std::memory_order_relaxed);
  ch.c.store(0, std::memory_order_relaxed);
  ch.weight.store(weight == 0 ? 1 : weight, std::memory_order_relaxed);
  ch.health.store(static_cast<uint32_t>(Health::Up), std::memory_order_relaxed);
  ch.reset_counters();
  ch.failures.store(0, std::memory_order_relaxed);
  ch.swrr_current.store(0, std::memory_order_relaxed);
  ch.hash_pending.store(enabled ? 0 : 1, std::memory_order_relaxed);
  groups[g].nchannels.store(n + 1, std::memory_order_release);  // publish last
  return static_cast<int>(n);
}

}  // namespace balance::core
