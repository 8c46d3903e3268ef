// Smooth weighted round robin (nginx's algorithm) for round-robin groups, run lock-free by the
// worker threads.
//
// Scheme: one cycle of the smooth order is a pure function of the group's weights, so each
// worker thread keeps it precomputed (SwrrCache) and the group's atomic cursor holds a position
// in that cycle. A pick claims the next position with a compare-exchange on the cursor, as plain
// round robin claims the next channel; no per-channel shared state is used (Channel::swrr_current
// stays unused). Concurrent picks claim distinct positions, so the shares are exact over whole
// cycles for any interleaving of picks, not only for sequential ones.
//
// When all weights of a group are equal the cycle is 0, 1, ..., n-1 over every channel, and the
// cursor is a channel index: exactly the classic round robin (an unusable channel's turn goes to
// the next usable one). Otherwise the cycle covers the channels that are enabled and healthy, so
// a disabled or down channel's turns are shared out by weight; a channel that is only full has
// its turn passed to the next usable position.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/table.h"

namespace balance::core {

// A cycle is at most about this long: larger reduced weight sums are scaled down to it.
inline constexpr uint32_t kMaxSwrrCycle = 16384;

// A channel weight as the algorithms use it: 0 (only a corrupt segment has it) counts as 1.
constexpr uint32_t effective_weight(uint32_t raw) { return raw == 0 ? 1 : raw; }

// Bit i set: channel i of `group` (i < n <= kMaxChannels) is usable (Channel::usable).
uint64_t usable_mask(const Group& group, uint32_t n, bool checks_on);

// Writes to out[i] the weights[i] divided by their greatest common divisor and, if their sum is
// still above kMaxSwrrCycle, scaled down in proportion (a non-zero weight stays at least 1, so
// the sum is then at most kMaxSwrrCycle + kMaxChannels). Zeros stay zero.
// Requires out.size() >= weights.size() and weights.size() <= kMaxChannels.
void reduce_weights(std::span<const uint32_t> weights, std::span<uint32_t> out);

// Replaces `out` with one cycle of the smooth weighted round-robin order of the reduced weights:
// each turn adds every weight to its channel's current value, picks the largest (the lowest index
// on a tie) and takes the sum of the weights off it. Channel i appears reduced_i times and its
// turns are spread out. Empty when every weight is 0. Requires weights.size() <= kMaxChannels.
void smooth_cycle(std::span<const uint32_t> weights, std::vector<uint8_t>& out);

// What a group's cycle is a function of; read from the table by swrr_inputs().
struct SwrrInputs {
  uint32_t count = 0;                            // channels in the group
  std::array<uint32_t, kMaxChannels> weights{};  // effective weights; zero past count
  uint64_t available = 0;                        // bit i: channel i enabled (and healthy)

  bool operator==(const SwrrInputs&) const = default;
};

// The inputs of group g as they are now (relaxed reads; g < kMaxGroups).
SwrrInputs swrr_inputs(const Table& table, uint32_t g);

// One cycle of a group's turns. Immutable after build(); safe to read from any thread.
class SwrrSequence {
 public:
  // Builds the cycle for `in` (see the file comment). Reuses its buffer.
  void build(const SwrrInputs& in);

  const SwrrInputs& inputs() const { return inputs_; }
  // All weights equal: the cycle is 0..count-1 and a position is a channel index.
  bool plain() const { return plain_; }
  // Positions in the cycle; 0 when no channel can have a turn.
  uint32_t length() const { return static_cast<uint32_t>(order_.size()); }
  // The channel at `position` (< length()).
  uint32_t at(uint32_t position) const { return order_[position]; }

 private:
  SwrrInputs inputs_;
  bool plain_ = true;
  std::vector<uint8_t> order_;
};

// Claims the group's next turn: from the position in group.cursor (taken modulo the length), the
// first position in cycle order whose channel is usable and not in `exclude` (bit i: channel i);
// moves the cursor just after it with a compare-exchange and returns that channel, or nullopt
// when none is. The caller still has to take the channel's slot. Lock-free; any thread.
std::optional<uint32_t> swrr_claim(Group& group, const SwrrSequence& seq, bool checks_on, uint64_t exclude = 0);

// The cycles of one worker thread, one per group, rebuilt when a group's inputs change.
// Threading: owned and used by one thread (not synchronized); the table may change meanwhile.
class SwrrCache {
 public:
  // The cycle for group g (< kMaxGroups) as its inputs are now; allocates only on a rebuild.
  const SwrrSequence& sequence_for(const Table& table, uint32_t g);
  // Rebuilds so far (for tests and metrics).
  uint64_t builds() const { return builds_; }

 private:
  std::array<std::unique_ptr<SwrrSequence>, kMaxGroups> sequences_;
  uint64_t builds_ = 0;
};

}  // namespace balance::core
