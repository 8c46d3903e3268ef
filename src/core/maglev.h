// Maglev consistent hashing for hash (%) groups: the lookup table of Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016, section 3.4.
//
// Each channel has its own order of preference over the M slots of the table, a permutation
// (offset, offset + skip, offset + 2 skip, ... mod M, M prime) drawn from two hashes of the
// channel's stable name. The channels take turns, each taking its most preferred free slot, until
// the table is full; a channel of weight w takes w turns per cycle (the smooth weighted
// round-robin order), so its share of the slots is proportional to its weight. A client goes to
// the channel of its slot, hash(client) mod M. The turns go by the channels' name hashes, not by
// their place in the list, so the same channels listed in another order give the same mapping.
//
// Unusable channels: a group's table is built over all its channels and is not rebuilt when one
// becomes unusable (disabled, down, full: that can change on every connection). A lookup walks
// the client's own probe sequence -- the slots of hash(client, probe) for probe 0, 1, ... -- to the
// first slot whose channel is eligible. So a client whose channel is eligible never moves, the
// clients of an unusable channel land on random slots and so spread over the others in
// proportion to their shares, and they come back when it returns.
//
// Stability: channel names and client addresses are hashed by fixed, seedless functions (64-bit
// FNV-1a, then the splitmix64 finalizer) over explicit byte strings, so processes (and hosts) with
// the same channel list build identical tables and map every client the same way.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/endpoint.h"
#include "core/table.h"

namespace balance::core {

// 64-bit FNV-1a of `bytes`.
uint64_t fnv1a64(std::span<const uint8_t> bytes);
// A bijective 64-bit mixer (the splitmix64 finalizer): every input bit affects every output bit.
uint64_t mix64(uint64_t x);

// The stable name hash of a channel: its address (IPv4-mapped IPv6 as IPv4; not the scope id,
// an interface index that differs between hosts) and port, and `repeat`, how many earlier
// channels of its group have the same address and port (so that repeats get their own slots).
uint64_t maglev_channel_key(const Endpoint& channel, uint32_t repeat);
// The key of a client for lookup(): its address only (IPv4-mapped IPv6 as IPv4), so a client
// keeps its channel across connections. Any other well-spread 64-bit value works as a key too.
uint64_t maglev_client_key(const Endpoint& client);

// What a group's table is a function of; read from the table by maglev_spec().
struct MaglevSpec {
  uint32_t count = 0;                              // channels in the group
  uint64_t members = 0;                            // bit i: channel i gets slots
  std::array<Endpoint, kMaxChannels> endpoints{};  // default past count
  std::array<uint32_t, kMaxChannels> weights{};    // effective weights; zero past count

  bool operator==(const MaglevSpec&) const = default;
};

// The spec of group g now (g < kMaxGroups): every channel a member, with its endpoint and weight.
MaglevSpec maglev_spec(const Table& table, uint32_t g);

// A group's lookup table. Immutable after build(); safe to read from any thread.
class MaglevTable {
 public:
  static constexpr uint32_t kSize = 65537;  // M: prime, and far above kMaxSwrrCycle + kMaxChannels
  static constexpr uint32_t kMaxProbes = 64;

  // Fills the table for `spec` (see the file comment); reuses its buffers. Deterministic.
  void build(const MaglevSpec& spec);

  const MaglevSpec& spec() const { return spec_; }
  // The channel of the client's own slot, usable or not (a hash group without -H);
  // nullopt only when the table has no members.
  std::optional<uint32_t> primary(uint64_t client_key) const;
  // The client's channel among `eligible` (bit i: channel i): the channel of the first slot of
  // its probe sequence that is in `eligible`; if kMaxProbes probes find none (only when few
  // channels are eligible), a pick among the eligible members by weight from the client key.
  // nullopt when no member is eligible. Deterministic in (table, client_key, eligible).
  std::optional<uint32_t> lookup(uint64_t client_key, uint64_t eligible) const;
  // Slots held by `channel` (for tests and diagnostics).
  uint32_t slots_of(uint32_t channel) const;

 private:
  void populate(const std::array<uint64_t, kMaxChannels>& keys);
  std::optional<uint32_t> fallback(uint64_t client_key, uint64_t eligible) const;

  MaglevSpec spec_;
  std::array<uint8_t, kMaxChannels> by_key_{};  // the members, ordered by name key
  uint32_t members_ = 0;                        // how many of by_key_ are set
  std::vector<uint8_t> entries_;  // kSize channel indexes, or empty when there are no members
  std::vector<uint8_t> turns_;    // build scratch: one cycle of the turn order
};

// The tables of one worker thread, one per hash group, rebuilt when a group's spec changes
// (channels added or reassigned, weights changed) -- not when channels become unusable.
// Threading: owned and used by one thread (not synchronized); the table may change meanwhile.
// A lookup reads the group's endpoints and weights to compare; only a rebuild allocates.
class MaglevCache {
 public:
  // The table of group g (< kMaxGroups) for its channels as they are now.
  const MaglevTable& table_for(const Table& table, uint32_t g);
  // Rebuilds so far (for tests and metrics).
  uint64_t builds() const { return builds_; }

 private:
  std::array<std::unique_ptr<MaglevTable>, kMaxGroups> tables_;
  uint64_t builds_ = 0;
};

}  // namespace balance::core
