// A copy of the channel table's numbers at one moment, as plain values: what /metrics,
// /status.json and the status page show. Taking it reads the shared table with relaxed atomic
// loads only (no lock, no write), so the HTTP threads never slow the workers down.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/endpoint.h"
#include "core/table.h"

namespace balance::metrics {

struct ChannelSample {
  uint32_t index = 0;
  core::Endpoint endpoint;  // invalid when the segment holds no readable address
  bool enabled = false;     // admin state
  bool up = true;           // health (meaningful only when Snapshot::checks_on)
  uint32_t connections = 0;      // c
  uint32_t max_connections = 0;  // maxc, 0 = unlimited
  uint32_t weight = 1;
  uint64_t connections_total = 0;  // totalc
  uint64_t connect_failures = 0;
  uint64_t sent_bytes = 0;      // client -> server
  uint64_t received_bytes = 0;  // server -> client

  // The backend label: "127.0.0.1:8081", "[::1]:8081", or "-" without an address.
  std::string backend() const;
};

struct GroupSample {
  uint32_t index = 0;
  core::GroupType type = core::GroupType::RoundRobin;
  std::vector<ChannelSample> channels;  // never empty
};

struct Snapshot {
  std::string version;
  int64_t start_time = 0;   // seconds since the epoch
  int64_t sampled_ms = 0;   // when the sample was taken, milliseconds since the epoch
  uint32_t threads = 0;
  bool checks_on = false;
  uint64_t accepted_total = 0;
  uint64_t refused_total = 0;
  uint64_t log_lines_dropped = 0;   // this process's (log::dropped_lines()), not the table's
  uint64_t log_lines_lost = 0;      // this process's (log::lost_lines())
  std::vector<GroupSample> groups;  // only groups that have channels, in order
};

// Reads `table` now (every count clamped, see core::Table::channel_count). `sampled_ms` is the
// caller's clock, so the function stays pure and testable. Any thread.
Snapshot take_snapshot(const core::Table& table, int64_t sampled_ms);

// "round-robin", "hash" or "least-connections".
const char* group_type_name(core::GroupType type);

}  // namespace balance::metrics
