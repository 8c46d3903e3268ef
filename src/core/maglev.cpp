#include "core/maglev.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstddef>

#include "core/weighted.h"

namespace balance::core {

namespace {

constexpr uint8_t kEmpty = 0xff;  // a free slot while building (channel indexes are < 64)
// Fixed salts that turn one name hash into two independent ones (offset and skip), and the
// step between a client's probes. Changing any of them remaps every client.
constexpr uint64_t kOffsetSalt = 0x6d61676c65762d6full;  // "maglev-o"
constexpr uint64_t kSkipSalt = 0x6d61676c65762d73ull;    // "maglev-s"
constexpr uint64_t kFallbackSalt = 0x6d61676c65762d66ull;  // "maglev-f"
constexpr uint64_t kProbeStep = 0x9e3779b97f4a7c15ull;   // 2^64 / golden ratio, odd

// The canonical bytes of an address: a family tag (4, 6, or 0 for none), then the address.
struct Name {
  std::array<uint8_t, 1 + 2 + 16 + 1> bytes{};
  std::size_t len = 0;

  void put(uint8_t b) { bytes[len++] = b; }
  std::span<const uint8_t> view() const { return {bytes.data(), len}; }
};

Name address_name(const Endpoint& e) {
  const Endpoint u = e.unmapped();
  Name name;
  const std::size_t addr_len = u.family == AF_INET ? 4 : u.family == AF_INET6 ? 16 : 0;
  name.put(u.family == AF_INET ? 4 : u.family == AF_INET6 ? 6 : 0);
  for (std::size_t i = 0; i < addr_len; ++i) name.put(u.addr[i]);
  return name;
}

// Address, then port (big-endian): what tells two channels apart, before the repeat count.
Name channel_name(const Endpoint& e) {
  Name name = address_name(e);
  name.put(static_cast<uint8_t>(e.port >> 8));
  name.put(static_cast<uint8_t>(e.port & 0xff));
  return name;
}

constexpr uint64_t low_bits(uint32_t n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }

// Every channel of the group but those hash_pending (created or reassigned, not enabled since).
uint64_t members_of(const Table& table, uint32_t g, uint32_t count) {
  uint64_t members = 0;
  for (uint32_t i = 0; i < count; ++i)
    if (table.groups[g].channels[i].hash_pending.load(std::memory_order_relaxed) == 0) members |= uint64_t{1} << i;
  return members;
}

// `spec` is what maglev_spec(table, g) would read now; compared in place, without building one.
bool spec_matches(const MaglevSpec& spec, const Table& table, uint32_t g) {
  const uint32_t count = table.channel_count(g);
  if (count != spec.count || spec.members != members_of(table, g, count)) return false;
  for (uint32_t i = 0; i < count; ++i) {
    const Channel& ch = table.groups[g].channels[i];
    if (effective_weight(ch.weight.load(std::memory_order_relaxed)) != spec.weights[i]) return false;
    if (ch.endpoint() != spec.endpoints[i]) return false;
  }
  return true;
}

uint32_t slot_of(uint64_t client_key, uint32_t probe) {
  return static_cast<uint32_t>(mix64(client_key + probe * kProbeStep) % MaglevTable::kSize);
}

}  // namespace

uint64_t fnv1a64(std::span<const uint8_t> bytes) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64-bit offset basis and prime
  for (const uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t maglev_channel_key(const Endpoint& channel, uint32_t repeat) {
  Name name = channel_name(channel);
  name.put(static_cast<uint8_t>(std::min<uint32_t>(repeat, 0xff)));
  return fnv1a64(name.view());
}

uint64_t maglev_client_key(const Endpoint& client) { return fnv1a64(address_name(client).view()); }

MaglevSpec maglev_spec(const Table& table, uint32_t g) {
  MaglevSpec spec;
  if (g >= kMaxGroups) return spec;
  spec.count = table.channel_count(g);
  spec.members = members_of(table, g, spec.count);
  for (uint32_t i = 0; i < spec.count; ++i) {
    const Channel& ch = table.groups[g].channels[i];
    spec.endpoints[i] = ch.endpoint();
    spec.weights[i] = effective_weight(ch.weight.load(std::memory_order_relaxed));
  }
  return spec;
}

void MaglevTable::build(const MaglevSpec& spec) {
  spec_ = spec;
  const uint32_t n = std::min(spec.count, kMaxChannels);
  const uint64_t members = spec.members & low_bits(n);
  entries_.clear();
  members_ = 0;
  if (members == 0) return;

  // Names: repeats are counted over all channels, members or not, so a channel's name (and its
  // permutation) never depends on membership.
  std::array<uint64_t, kMaxChannels> keys{};
  std::array<Name, kMaxChannels> names{};
  for (uint32_t i = 0; i < n; ++i) {
    names[i] = channel_name(spec.endpoints[i]);
    uint32_t repeat = 0;
    for (uint32_t j = 0; j < i; ++j) repeat += std::ranges::equal(names[j].view(), names[i].view()) ? 1 : 0;
    keys[i] = maglev_channel_key(spec.endpoints[i], repeat);
  }

  // Members in key order, not listing order: processes that list the same channels in another
  // order still build the same table (up to channel numbering).
  for (uint32_t i = 0; i < n; ++i) {
    if ((members >> i) & 1u) by_key_[members_++] = static_cast<uint8_t>(i);
  }
  std::sort(by_key_.begin(), by_key_.begin() + members_, [&](uint8_t a, uint8_t b) { return keys[a] < keys[b]; });
  populate(keys);
}

// The population loop of the paper, with weighted turns: the members take turns in the smooth
// weighted round-robin order of their weights (in key order), each taking its most preferred
// free slot, until every slot is taken.
void MaglevTable::populate(const std::array<uint64_t, kMaxChannels>& keys) {
  std::array<uint32_t, kMaxChannels> weights{};
  for (uint32_t k = 0; k < members_; ++k) weights[k] = effective_weight(spec_.weights[by_key_[k]]);
  smooth_cycle(std::span<const uint32_t>(weights.data(), members_), turns_);  // turns of by_key_ positions

  std::array<uint32_t, kMaxChannels> next{};  // per channel: the next slot it would like
  std::array<uint32_t, kMaxChannels> skip{};  // per channel: the step of its permutation
  for (uint32_t k = 0; k < members_; ++k) {
    const uint8_t ch = by_key_[k];
    next[ch] = static_cast<uint32_t>(mix64(keys[ch] ^ kOffsetSalt) % kSize);
    skip[ch] = static_cast<uint32_t>(mix64(keys[ch] ^ kSkipSalt) % (kSize - 1) + 1);  // 1..M-1
  }
  entries_.assign(kSize, kEmpty);
  for (std::size_t filled = 0, turn = 0; filled < kSize; ++filled, ++turn) {
    const uint8_t ch = by_key_[turns_[turn % turns_.size()]];
    // skip < M and M prime: the walk visits every slot, so it reaches a free one.
    uint32_t slot = next[ch];
    while (entries_[slot] != kEmpty) slot = (slot + skip[ch]) % kSize;
    entries_[slot] = ch;
    next[ch] = (slot + skip[ch]) % kSize;
  }
}

std::optional<uint32_t> MaglevTable::primary(uint64_t client_key) const {
  if (entries_.empty()) return std::nullopt;
  return entries_[slot_of(client_key, 0)];
}

std::optional<uint32_t> MaglevTable::lookup(uint64_t client_key, uint64_t eligible) const {
  if (entries_.empty()) return std::nullopt;
  eligible &= spec_.members & low_bits(std::min(spec_.count, kMaxChannels));
  if (eligible == 0) return std::nullopt;
  for (uint32_t probe = 0; probe < kMaxProbes; ++probe) {
    const uint8_t ch = entries_[slot_of(client_key, probe)];
    if ((eligible >> ch) & 1u) return ch;
  }
  return fallback(client_key, eligible);
}

// Few eligible channels (each probe misses with probability 1 - their share): a pick among
// them weighted like the table, still a function of the client key alone.
std::optional<uint32_t> MaglevTable::fallback(uint64_t client_key, uint64_t eligible) const {
  uint64_t total = 0;
  for (uint32_t k = 0; k < members_; ++k) {
    if ((eligible >> by_key_[k]) & 1u) total += effective_weight(spec_.weights[by_key_[k]]);
  }
  uint64_t r = mix64(client_key ^ kFallbackSalt) % total;  // total > 0: eligible holds a member
  for (uint32_t k = 0; k < members_; ++k) {  // key order, like the table
    const uint8_t ch = by_key_[k];
    if (((eligible >> ch) & 1u) == 0) continue;
    const uint64_t w = effective_weight(spec_.weights[ch]);
    if (r < w) return ch;
    r -= w;
  }
  return std::nullopt;  // not reached: r < total
}

uint32_t MaglevTable::slots_of(uint32_t channel) const {
  return static_cast<uint32_t>(std::count(entries_.begin(), entries_.end(), channel));
}

const MaglevTable& MaglevCache::table_for(const Table& table, uint32_t g) {
  static const MaglevTable kNone;  // for an out-of-range group: no members
  if (g >= kMaxGroups) return kNone;
  auto& t = tables_[g];
  if (t && spec_matches(t->spec(), table, g)) return *t;
  if (!t) t = std::make_unique<MaglevTable>();
  t->build(maglev_spec(table, g));
  ++builds_;
  return *t;
}

}  // namespace balance::core
