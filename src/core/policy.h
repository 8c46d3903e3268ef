// Choosing a channel for one client and failing over (COMPAT.md, "Choosing a channel"):
// a pure walk over the Table, no syscalls, so it is tested without sockets.
//
// A Selector lives for one accepted client. The connector asks next() for a channel to try,
// connects (asynchronously), and reports back with failed() or connected(). next() already
// holds the channel's slot (c and totalc incremented), so maxc is honoured across threads.
//
// Threading: any worker thread may run Selectors on the same Table concurrently; the shared
// state they touch (cursor, c, totalc, enabled with -a) is atomic.
#pragma once

#include <cstdint>
#include <optional>

#include "core/endpoint.h"
#include "core/table.h"

namespace balance::core {

// The classic balance hash of a client address (hash_fold over the address bytes, signed
// chars, rc = s[i] + 31 * rc). IPv4-mapped IPv6 clients hash as their IPv4 address.
uint32_t client_hash(const Endpoint& client);

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
  Selector(Table& table, uint32_t client_hash, SelectorOptions options);

  // The next channel to try, its slot already taken; nullopt when every group is exhausted.
  std::optional<Pick> next();
  // The connect to `p` failed: gives its slot back and, with -a, disables the channel.
  // Returns true when this call disabled the channel (so the caller can log it).
  bool failed(const Pick& p);
  // The connect to `p` succeeded: the group's cursor moves to just after it.
  void connected(const Pick& p);

 private:
  std::optional<Pick> scan_group();
  std::optional<Pick> take(uint32_t g, uint32_t idx);

  Table& table_;
  uint32_t hash_;
  SelectorOptions options_;
  uint32_t group_ = 0;       // group being walked
  bool in_group_ = false;    // the walk of group_ has started
  uint32_t start_ = 0;       // where the walk of group_ started
  uint32_t steps_ = 0;       // channels of group_ looked at so far
  bool single_ = false;      // hash group without -H: only the hashed channel
};

// Gives back the slot of a finished connection on channel (g, c).
void release(Table& table, uint32_t group, uint32_t channel);

}  // namespace balance::core
