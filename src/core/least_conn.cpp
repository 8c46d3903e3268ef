#include "core/least_conn.h"

#include <array>
#include <cstddef>

#include "core/weighted.h"

namespace balance::core {

std::optional<uint32_t> least_loaded(std::span<const LoadView> channels, uint32_t from) {
  const std::size_t n = channels.size();
  if (n == 0) return std::nullopt;
  std::optional<std::size_t> best;
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (from % n + k) % n;
    const LoadView& v = channels[i];
    if (!v.usable) continue;
    if (best) {
      const LoadView& b = channels[*best];
      // conns_i / weight_i < conns_b / weight_b without division; each product < 2^64.
      const uint64_t lhs = uint64_t{v.conns} * effective_weight(b.weight);
      const uint64_t rhs = uint64_t{b.conns} * effective_weight(v.weight);
      if (lhs >= rhs) continue;  // not strictly less: the earlier one (from `from`) keeps a tie
    }
    best = i;
  }
  if (!best) return std::nullopt;
  return static_cast<uint32_t>(*best);
}

std::optional<uint32_t> least_conn_claim(Group& group, uint32_t n, bool checks_on, uint64_t exclude) {
  if (n > kMaxChannels) n = kMaxChannels;
  if (n == 0) return std::nullopt;
  std::array<LoadView, kMaxChannels> views;
  uint32_t cur = group.cursor.load(std::memory_order_relaxed);
  for (;;) {
    // Counts are re-read on every attempt: a lost compare-exchange means another pick happened.
    for (uint32_t i = 0; i < n; ++i) {
      const Channel& ch = group.channels[i];
      views[i].conns = ch.c.load(std::memory_order_relaxed);
      views[i].weight = ch.weight.load(std::memory_order_relaxed);
      views[i].usable = ((exclude >> i) & 1u) == 0 && ch.usable(checks_on);
    }
    const auto pick = least_loaded(std::span<const LoadView>(views.data(), n), cur);  // cur % n inside
    if (!pick) return std::nullopt;
    if (group.cursor.compare_exchange_weak(cur, (*pick + 1) % n, std::memory_order_relaxed)) return pick;
  }
}

}  // namespace balance::core
