#include "ctl/format.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <string_view>
#include <utility>
#include <vector>

#include "version.h"

namespace balance::ctl {
namespace {

constexpr int kAddressWidth = 16;

const char* type_name(core::GroupType type) {
  switch (type) {
    case core::GroupType::Hash:
      return "Hash";
    case core::GroupType::LeastConn:
      return "LC";
    case core::GroupType::RoundRobin:
      break;
  }
  return "RR";
}

struct Row {
  uint32_t group;
  uint32_t channel;
  core::Endpoint endpoint;  // read once: an `assign` may rewrite it meanwhile
  std::string address;
  const core::Channel* ch;
};

std::vector<Row> collect_rows(const core::Table& table) {
  std::vector<Row> rows;
  for (uint32_t g = 0; g < core::kMaxGroups; ++g) {
    const uint32_t n = table.channel_count(g);
    for (uint32_t c = 0; c < n; ++c) {
      const core::Channel& ch = table.groups[g].channels[c];
      const core::Endpoint e = ch.endpoint();
      rows.push_back({g, c, e, e.host_string(), &ch});
    }
  }
  return rows;
}

// The optional columns: weight when some channel's weight is not 1, health when checks are on.
struct Columns {
  int address_width = kAddressWidth;
  bool weight = false;
  bool health = false;
};

Columns columns_for(const core::Table& table, const std::vector<Row>& rows) {
  Columns cols;
  cols.health = table.checks_on();
  for (const Row& row : rows) {
    cols.address_width = std::max(cols.address_width, static_cast<int>(row.address.size()));
    if (row.ch->weight.load(std::memory_order_relaxed) != 1) cols.weight = true;
  }
  return cols;
}

std::string optional_cells(const core::Channel& ch, const Columns& cols) {
  char cells[32] = "";
  const bool up = ch.health.load(std::memory_order_relaxed) == static_cast<uint32_t>(core::Health::Up);
  if (cols.weight && cols.health) {
    std::snprintf(cells, sizeof cells, " %6u %6s", ch.weight.load(std::memory_order_relaxed), up ? "up" : "down");
  } else if (cols.weight) {
    std::snprintf(cells, sizeof cells, " %6u", ch.weight.load(std::memory_order_relaxed));
  } else if (cols.health) {
    std::snprintf(cells, sizeof cells, " %6s", up ? "up" : "down");
  }
  return cells;
}

std::string format_row(const core::Table& table, const Row& row, const Columns& cols) {
  const core::Channel& ch = *row.ch;
  char line[256];
  std::snprintf(line, sizeof line, "%3u %4s %2u %3s %*s %5u %4u %11llu %4u %11llu %11llu", row.group,
                type_name(table.group_type(row.group)), row.channel,
                ch.enabled.load(std::memory_order_relaxed) != 0 ? "ENA" : "dis", cols.address_width,
                row.address.c_str(),
                static_cast<unsigned>(row.endpoint.port), ch.c.load(std::memory_order_relaxed),
                static_cast<unsigned long long>(ch.totalc.load(std::memory_order_relaxed)),
                ch.maxc.load(std::memory_order_relaxed),
                static_cast<unsigned long long>(ch.sent.load(std::memory_order_relaxed)),
                static_cast<unsigned long long>(ch.rcvd.load(std::memory_order_relaxed)));
  return line + optional_cells(ch, cols) + "\n";
}

std::string format_count_line(uint64_t n) { return std::to_string(n) + "\n"; }

}  // namespace

std::string format_show(const core::Table& table) {
  const std::vector<Row> rows = collect_rows(table);
  const Columns cols = columns_for(table, rows);
  char header[256];
  std::snprintf(header, sizeof header, "GRP Type  #   S %*s  port    c      totalc maxc        sent        rcvd%s%s\n",
                cols.address_width, "ip-address", cols.weight ? " weight" : "", cols.health ? " health" : "");
  std::string out = header;
  for (const Row& row : rows) out += format_row(table, row, cols);
  return out;
}

std::string format_help() {
  // The classic commands in the classic order, then the additions.
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 18> kLines{{
      {"create <host> <port>", "creates a channel in the current group"},
      {"assign <channel> <host> <port>", "gives a disabled channel a new address"},
      {"disable <channel>", "disables a channel of the current group"},
      {"enable <channel>", "enables a channel of the current group"},
      {"group <group>", "makes <group> the current group"},
      {"hash", "sets the current group to hash distribution"},
      {"help", "prints this list of commands"},
      {"kill", "stops the master process and leaves the shell"},
      {"maxc <channel> <maxc>", "sets the connection limit of a channel (0 = none)"},
      {"mrtg-bytes <group> <channel>", "prints bytes received/sent for MRTG"},
      {"mrtg-conns <group> <channel>", "prints total connections for MRTG"},
      {"quit", "leaves the shell"},
      {"reset <channel>", "resets the counters of a channel"},
      {"rr", "sets the current group to round robin distribution"},
      {"show", "shows every channel with its state and counters"},
      {"version", "prints the version and the compiled-in limits"},
      {"lc", "sets the current group to least connections"},
      {"weight <channel> <weight>", "sets the weight of a channel (1..1000000)"},
  }};
  std::string out;
  char line[160];
  for (const auto& [usage, what] : kLines) {
    std::snprintf(line, sizeof line, "  %-31.*s%.*s\n", static_cast<int>(usage.size()), usage.data(),
                  static_cast<int>(what.size()), what.data());
    out += line;
  }
  return out;
}

std::string format_version() {
  return std::string("  This is balance ") + kVersion + "\n  MAXGROUPS=" + std::to_string(core::kMaxGroups) +
         "\n  MAXCHANNELS=" + std::to_string(core::kMaxChannels) + "\n";
}

std::string format_mrtg_bytes(const core::Table& table, uint32_t group, uint32_t channel) {
  const core::Channel& ch = table.groups[group].channels[channel];
  return format_count_line(ch.rcvd.load(std::memory_order_relaxed)) +
         format_count_line(ch.sent.load(std::memory_order_relaxed)) + "UNKNOWN\ngroup " + std::to_string(group) +
         " channel " + std::to_string(channel) + "\n";
}

std::string format_mrtg_conns(const core::Table& table, uint32_t group, uint32_t channel) {
  const core::Channel& ch = table.groups[group].channels[channel];
  return format_count_line(ch.totalc.load(std::memory_order_relaxed)) + "UNKNOWN\nUNKNOWN\ngroup " +
         std::to_string(group) + " channel " + std::to_string(channel) + "\n";
}

}  // namespace balance::ctl
