// The channel table: groups of channels with their state and counters, in a fixed, versioned
// layout meant to live in shared memory (ctl/segment.h maps it), so that the control shell of
// another process reads and changes it while the workers run.
//
// Threading contract: every mutable field is a lock-free std::atomic, so the worker threads of
// the master and control clients in other processes touch it without locks. Writers that change
// configuration (control commands) serialize among themselves (ctl takes a file lock); workers
// only ever touch counters, the round-robin cursor and -- with -a -- the enabled flag.
//
// Trust: a segment can be corrupted or forged by whoever can write it. Nothing read from it is
// used as an index without clamping (see channel_count(), group_count()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/endpoint.h"

namespace balance::core {

inline constexpr uint32_t kMaxGroups = 32;
inline constexpr uint32_t kMaxChannels = 64;
inline constexpr char kMagic[8] = {'B', 'A', 'L', 'A', 'N', 'C', 'E', '\0'};
inline constexpr uint32_t kLayoutVersion = 1;

enum class GroupType : uint32_t {
  RoundRobin = 0,
  Hash = 1,
  LeastConn = 2,  // reserved for the least-connections policy
};

// Bits of Header::flags.
inline constexpr uint32_t kFlagChecks = 1u << 0;  // active health checks are on
// The master drains after a stop signal (never set by a master an upgrade replaced): a second
// SIGTERM would cut its connections, so `kill` only waits.
inline constexpr uint32_t kFlagStopping = 1u << 1;
// The upper half of Header::flags counts the master's writes of its pid and start ticks, odd
// while one is under way (a seqlock): an upgrade's new master writes itself in while clients
// read, and a client must not pair one master's pid with the other's start ticks. Older
// versions leave these bits alone.
inline constexpr uint32_t kMasterSeqOne = 1u << 16;
inline constexpr uint32_t master_seq(uint32_t flags) { return flags / kMasterSeqOne; }

// Health of a channel as seen by the health checker (when checks are on).
enum class Health : uint32_t { Up = 0, Down = 1 };

struct alignas(64) Channel {
  // Seqlock around the endpoint words: `assign` rewrites the address while workers read it.
  std::atomic<uint32_t> endpoint_seq;
  std::atomic<uint32_t> enabled;  // admin state: 1 = ENA, 0 = dis
  std::atomic<uint64_t> endpoint_words[3];

  std::atomic<uint32_t> maxc;    // 0 = unlimited
  std::atomic<uint32_t> c;       // current connections
  std::atomic<uint32_t> weight;  // 1 by default
  std::atomic<uint32_t> health;  // Health
  std::atomic<uint64_t> totalc;  // every try counts
  std::atomic<uint64_t> failures;  // connect failures

  // Per-byte counters on their own cache line: they change on every read.
  alignas(64) std::atomic<uint64_t> sent;  // client -> server bytes
  std::atomic<uint64_t> rcvd;              // server -> client bytes
  std::atomic<int64_t> swrr_current;       // smooth weighted round robin state
  // 1: created or given a new address by the control shell and not enabled since. Such a channel
  // is left out of its hash group's Maglev table, so that adding it moves no client until it is
  // enabled. (0 in a segment an older balance wrote: this word was padding there.)
  std::atomic<uint32_t> hash_pending;

  // Reads the endpoint; an invalid Endpoint if a writer never finished (corrupt segment).
  Endpoint endpoint() const;
  // Writes the endpoint. Callers serialize writers (control lock, or single-threaded setup).
  void set_endpoint(const Endpoint& e);

  // Admin-enabled, healthy and below maxc.
  bool usable(bool checks_on) const;
  // Takes one connection slot if below maxc (c < maxc or maxc == 0); counts the try in totalc.
  bool try_acquire();
  // Gives back a slot taken by try_acquire(); never wraps below zero.
  void release();
  // Zeroes totalc, sent and rcvd (the `reset` command).
  void reset_counters();
};

struct alignas(64) Group {
  std::atomic<uint32_t> type;       // GroupType
  std::atomic<uint32_t> nchannels;  // published after the channel is written (release)
  std::atomic<uint32_t> cursor;     // round-robin position
  Channel channels[kMaxChannels];
};

struct alignas(64) Header {
  char magic[8];
  uint32_t layout_version;
  uint32_t table_size;  // sizeof(Table)
  uint32_t max_groups;
  uint32_t max_channels;
  char program_version[16];
  std::atomic<int32_t> master_pid;
  std::atomic<uint32_t> grace_s;  // --grace: how long a graceful stop may take (`kill` waits for it)
  uint64_t master_start_ticks;  // /proc/<pid>/stat field 22: tells a reused PID apart
  int64_t start_time;           // seconds since the epoch
  std::atomic<uint32_t> flags;
  std::atomic<uint32_t> threads;
  std::atomic<uint64_t> accepted_total;
  std::atomic<uint64_t> refused_total;  // accepted clients no channel would take
};

struct Table {
  Header header;
  Group groups[kMaxGroups];

  // Writes a fresh header and empties every group. `master_start_ticks` may be 0.
  void init(int32_t master_pid, uint64_t master_start_ticks, int64_t start_time);
  // Header says this is a table of this layout and size.
  bool header_valid() const;

  // Number of channels in group g, clamped to kMaxChannels (0 for g out of range).
  uint32_t channel_count(uint32_t g) const;
  GroupType group_type(uint32_t g) const;
  bool checks_on() const { return (header.flags.load(std::memory_order_relaxed) & kFlagChecks) != 0; }

  // Appends a channel to group g (setup and `create`); returns its index, or -1 when full. One
  // appended disabled is hash_pending until enabled.
  int append_channel(uint32_t g, const Endpoint& e, uint32_t maxc, bool enabled, uint32_t weight = 1);
};

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory counters need lock-free atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(Endpoint) == 24, "Endpoint is stored as three 64-bit words");

}  // namespace balance::core
