// Least connections: the usable channel with the fewest current connections relative to its
// weight, ties broken by round robin from the group's cursor.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "core/table.h"

namespace balance::core {

// One channel as least connections sees it.
struct LoadView {
  uint32_t conns = 0;   // current connections (Channel::c)
  uint32_t weight = 1;  // 0 counts as 1
  bool usable = false;  // may take a connection now
};

// The usable channel with the smallest conns / weight, compared exactly as
// conns_i * weight_j < conns_j * weight_i in 64 bits; on a tie, the first one in cyclic order
// from `from` (taken modulo the size). nullopt when none is usable. Pure.
std::optional<uint32_t> least_loaded(std::span<const LoadView> channels, uint32_t from);

// Picks for a least-connections group of n channels: least_loaded() over the channels that are
// usable and not in `exclude` (bit i: channel i), from the position in group.cursor; moves the
// cursor just after the pick with a compare-exchange, so that ties rotate, and returns it.
// nullopt when no channel qualifies. The caller still has to take the channel's slot.
// Lock-free; any thread. Concurrent picks that race see each other through the cursor: the
// loser rescans from the winner's pick onwards, so simultaneous ties go to different channels.
std::optional<uint32_t> least_conn_claim(Group& group, uint32_t n, bool checks_on, uint64_t exclude = 0);

}  // namespace balance::core
