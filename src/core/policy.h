// Choosing a channel for one client and failing over (COMPAT.md, "Choosing a channel", and the
// opt-in policies of issue 6): a pure walk over the Table, no syscalls, so it is tested without
// sockets.
//
// A Selector lives for one accepted client. The connector asks next() for a channel to try,
// connects (asynchronously), and reports back with failed() or connected(). next() already
// holds the channel's slot (c and totalc incremented), so maxc is honoured across threads.
//
// Groups are walked in order; within a group, by its type:
//   round robin   the group's next turn in its smooth weighted round-robin cycle (weighted.h;
//                 with equal weights exactly the classic cursor), then on failure the following
//                 channels in index order, wrapping, each once;
//   hash (%)      the client's channel in the group's Maglev table (maglev.h), keyed by the client
//                 address. Without -H only that channel is tried; with -H the client's channel
//                 among those usable and not yet tried, so only an unusable channel's clients
//                 move, spread by weight over the others, and they come back when it returns;
//   least conn    the usable, untried channel with the fewest connections relative to its
//                 weight (least_conn.h), ties by round robin; failover takes the next such.
//
// Threading: any worker thread may run Selectors on the same Table concurrently; the shared
// state they touch (cursor, c, totalc, enabled with -a) is atomic. Each thread keeps its own
// Maglev tables and weighted cycles (thread_local caches, rebuilt when a group's channels or
// weights change), so a Selector must be used on one thread only. Only such a rebuild allocates.
#pragma once

#include <cstdint>
#include <optional>

#include "core/endpoint.h"
#include "core/table.h"

namespace balance::core {

struct Pick {
  uint32_t group = 0;
  uint32_t channel = 0;
  Endpoint endpoint;  // the channel's address when it was picked
};

struct SelectorOptions {
  bool hash_failover = false;  // -H
  bool autodisable = false;    // -a
};

class Selector {
 public:
  // `client` is the accepted peer; only its address matters (hash groups).
  Selector(Table& table, const Endpoint& client, SelectorOptions options);

  // The next channel to try, its slot already taken; nullopt when every group is exhausted.
  std::optional<Pick> next();
  // The connect to `p` failed: gives its slot back and, with -a, disables the channel.
  // Returns true when this call disabled the channel (so the caller can log it).
  bool failed(const Pick& p);
  // The connect to `p` succeeded: in a plain round-robin (or hash) group the cursor moves to
  // just after it; weighted and least-connections groups moved their cursor when they picked.
  void connected(const Pick& p);

 private:
  std::optional<Pick> scan_group();
  std::optional<Pick> next_round_robin(uint32_t n, bool fresh);
  std::optional<Pick> next_hashed(uint32_t n);
  std::optional<Pick> next_least_loaded(uint32_t n);
  std::optional<Pick> take(uint32_t g, uint32_t idx);

  Table& table_;
  uint64_t key_;  // maglev_client_key of the client
  SelectorOptions options_;
  uint32_t group_ = 0;                     // group being walked
  bool in_group_ = false;                  // the walk of group_ has started
  GroupType kind_ = GroupType::RoundRobin;  // group_'s type when its walk started
  uint32_t start_ = 0;                     // round robin: where the walk of group_ started
  uint32_t steps_ = 0;                     // round robin: channels of group_ looked at so far
  uint64_t tried_ = 0;                     // hash, least conn: bit i = channel i of group_ tried
};

// Gives back the slot of a finished connection on channel (g, c).
void release(Table& table, uint32_t group, uint32_t channel);

}  // namespace balance::core
