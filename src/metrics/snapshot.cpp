#include "metrics/snapshot.h"

#include "version.h"

namespace balance::metrics {
namespace {

ChannelSample sample_channel(const core::Channel& ch, uint32_t index) {
  constexpr auto relaxed = std::memory_order_relaxed;
  ChannelSample s;
  s.index = index;
  s.endpoint = ch.endpoint();
  s.enabled = ch.enabled.load(relaxed) != 0;
  // Anything but Up (including a corrupt value) counts as down, as the selection policy does.
  s.up = ch.health.load(relaxed) == static_cast<uint32_t>(core::Health::Up);
  s.connections = ch.c.load(relaxed);
  s.max_connections = ch.maxc.load(relaxed);
  s.weight = ch.weight.load(relaxed);
  s.connections_total = ch.totalc.load(relaxed);
  s.connect_failures = ch.failures.load(relaxed);
  s.sent_bytes = ch.sent.load(relaxed);
  s.received_bytes = ch.rcvd.load(relaxed);
  return s;
}

}  // namespace

std::string ChannelSample::backend() const { return endpoint.valid() ? endpoint.to_string() : "-"; }

const char* group_type_name(core::GroupType type) {
  switch (type) {
    case core::GroupType::Hash: return "hash";
    case core::GroupType::LeastConn: return "least-connections";
    case core::GroupType::RoundRobin: break;
  }
  return "round-robin";
}

Snapshot take_snapshot(const core::Table& table, int64_t sampled_ms) {
  constexpr auto relaxed = std::memory_order_relaxed;
  Snapshot snap;
  snap.version = kVersion;
  snap.start_time = table.header.start_time;
  snap.sampled_ms = sampled_ms;
  snap.threads = table.header.threads.load(relaxed);
  snap.checks_on = table.checks_on();
  snap.accepted_total = table.header.accepted_total.load(relaxed);
  snap.refused_total = table.header.refused_total.load(relaxed);
  for (uint32_t g = 0; g < core::kMaxGroups; ++g) {
    const uint32_t n = table.channel_count(g);  // clamped: a corrupt count never overruns
    if (n == 0) continue;
    GroupSample group;
    group.index = g;
    group.type = table.group_type(g);
    group.channels.reserve(n);
    for (uint32_t c = 0; c < n; ++c) group.channels.push_back(sample_channel(table.groups[g].channels[c], c));
    snap.groups.push_back(std::move(group));
  }
  return snap;
}

}  // namespace balance::metrics
