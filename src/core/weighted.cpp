#include "core/weighted.h"

#include <algorithm>
#include <cstddef>
#include <numeric>

namespace balance::core {

namespace {

// The first position from `from` onwards (wrapping) whose channel is in `open`, or nullopt.
std::optional<uint32_t> first_open(const SwrrSequence& seq, uint32_t from, uint64_t open) {
  const uint32_t length = seq.length();
  for (uint32_t k = 0; k < length; ++k) {
    const uint32_t pos = (from + k) % length;
    if ((open >> seq.at(pos)) & 1u) return pos;
  }
  return std::nullopt;
}

bool available(const Channel& ch, bool checks_on) {
  if (ch.enabled.load(std::memory_order_relaxed) == 0) return false;
  return !checks_on || ch.health.load(std::memory_order_relaxed) == static_cast<uint32_t>(Health::Up);
}

// `in` is what swrr_inputs(table, g) would read now; compared in place, without building one.
bool inputs_match(const SwrrInputs& in, const Table& table, uint32_t g) {
  const uint32_t count = table.channel_count(g);
  if (count != in.count) return false;
  const bool checks_on = table.checks_on();
  uint64_t avail = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const Channel& ch = table.groups[g].channels[i];
    if (effective_weight(ch.weight.load(std::memory_order_relaxed)) != in.weights[i]) return false;
    if (available(ch, checks_on)) avail |= uint64_t{1} << i;
  }
  return avail == in.available;
}

}  // namespace

uint64_t usable_mask(const Group& group, uint32_t n, bool checks_on) {
  uint64_t mask = 0;
  for (uint32_t i = 0; i < n && i < kMaxChannels; ++i) {
    if (group.channels[i].usable(checks_on)) mask |= uint64_t{1} << i;
  }
  return mask;
}

void reduce_weights(std::span<const uint32_t> weights, std::span<uint32_t> out) {
  uint32_t divisor = 0;
  for (const uint32_t w : weights) divisor = std::gcd(divisor, w);
  uint64_t sum = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    out[i] = divisor == 0 ? 0 : weights[i] / divisor;
    sum += out[i];
  }
  if (sum <= kMaxSwrrCycle) return;
  // Round to nearest; 64-bit products: a weight is below 2^32 and kMaxSwrrCycle is 2^14.
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (out[i] == 0) continue;
    const uint64_t scaled = (uint64_t{out[i]} * kMaxSwrrCycle + sum / 2) / sum;
    out[i] = static_cast<uint32_t>(std::max<uint64_t>(1, scaled));
  }
}

void smooth_cycle(std::span<const uint32_t> weights, std::vector<uint8_t>& out) {
  const std::size_t n = std::min<std::size_t>(weights.size(), kMaxChannels);
  std::array<uint32_t, kMaxChannels> w{};
  reduce_weights(weights.first(n), w);
  int64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) total += w[i];
  out.clear();
  out.reserve(static_cast<std::size_t>(total));
  std::array<int64_t, kMaxChannels> current{};
  for (int64_t turn = 0; turn < total; ++turn) {
    std::size_t best = n;
    for (std::size_t i = 0; i < n; ++i) {
      if (w[i] == 0) continue;
      current[i] += w[i];
      if (best == n || current[i] > current[best]) best = i;  // strict: ties keep the lower index
    }
    current[best] -= total;
    out.push_back(static_cast<uint8_t>(best));
  }
}

SwrrInputs swrr_inputs(const Table& table, uint32_t g) {
  SwrrInputs in;
  if (g >= kMaxGroups) return in;
  in.count = table.channel_count(g);
  const bool checks_on = table.checks_on();
  for (uint32_t i = 0; i < in.count; ++i) {
    const Channel& ch = table.groups[g].channels[i];
    in.weights[i] = effective_weight(ch.weight.load(std::memory_order_relaxed));
    if (available(ch, checks_on)) in.available |= uint64_t{1} << i;
  }
  return in;
}

void SwrrSequence::build(const SwrrInputs& in) {
  inputs_ = in;
  const uint32_t n = std::min(in.count, kMaxChannels);
  plain_ = std::all_of(in.weights.begin(), in.weights.begin() + n, [&](uint32_t w) { return w == in.weights[0]; });
  order_.clear();
  if (plain_) {
    for (uint32_t i = 0; i < n; ++i) order_.push_back(static_cast<uint8_t>(i));
    return;
  }
  std::array<uint32_t, kMaxChannels> w{};
  for (uint32_t i = 0; i < n; ++i) w[i] = ((in.available >> i) & 1u) ? in.weights[i] : 0;
  smooth_cycle(std::span<const uint32_t>(w.data(), n), order_);
}

std::optional<uint32_t> swrr_claim(Group& group, const SwrrSequence& seq, bool checks_on, uint64_t exclude) {
  const uint32_t length = seq.length();
  if (length == 0) return std::nullopt;
  uint32_t cur = group.cursor.load(std::memory_order_relaxed);
  for (;;) {
    // Usability is read once per attempt, not per position: a cycle can be far longer than
    // the group. A failed compare-exchange reloads `cur` (someone claimed a turn) and retries.
    const uint64_t open = usable_mask(group, seq.inputs().count, checks_on) & ~exclude;
    if (open == 0) return std::nullopt;
    const auto pos = first_open(seq, cur % length, open);  // cur may be corrupt: modulo
    if (!pos) return std::nullopt;
    if (group.cursor.compare_exchange_weak(cur, (*pos + 1) % length, std::memory_order_relaxed)) {
      return seq.at(*pos);
    }
  }
}

const SwrrSequence& SwrrCache::sequence_for(const Table& table, uint32_t g) {
  static const SwrrSequence kNone;  // for an out-of-range group: no turns
  if (g >= kMaxGroups) return kNone;
  auto& seq = sequences_[g];
  if (seq && inputs_match(seq->inputs(), table, g)) return *seq;
  if (!seq) seq = std::make_unique<SwrrSequence>();
  seq->build(swrr_inputs(table, g));
  ++builds_;
  return *seq;
}

}  // namespace balance::core
