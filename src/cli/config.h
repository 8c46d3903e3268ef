// What the command line asks for, fully parsed and resolved: the output of cli::parse().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/endpoint.h"
#include "core/table.h"

namespace balance::cli {

enum class Mode {
  Serve,        // run the proxy
  Interactive,  // -i: the control shell
  Command,      // -c CMD: one control command
};

struct ChannelSpec {
  std::string text;        // as written, for messages
  core::Endpoint endpoint;  // resolved address and port
  uint32_t maxc = 0;       // 0 = unlimited
  uint32_t weight = 1;
};

struct GroupSpec {
  core::GroupType type = core::GroupType::RoundRobin;
  std::vector<ChannelSpec> channels;
};

struct Config {
  Mode mode = Mode::Serve;
  uint16_t port = 0;                    // listening port, host order
  std::string bind_text;                // -b as written ("" = all addresses); also names the instance
  std::optional<core::Endpoint> bind;   // -b resolved (port set to `port`)
  std::optional<core::Endpoint> out_bind;  // -B resolved (port 0)
  unsigned connect_timeout_s = 5;       // -t
  unsigned idle_timeout_s = 0;          // -T, 0 = never
  bool autodisable = false;             // -a
  bool debug = false;                   // -d
  bool foreground = false;              // -f
  bool packet_dump = false;             // -p
  bool hash_failover = false;           // -H
  bool use_mmap = false;                // -M
  bool force_ipv6 = false;              // -6
  unsigned threads = 0;                 // --threads, 0 = number of CPUs
  std::string command;                  // -c CMD
  std::vector<GroupSpec> groups;        // Serve mode only
};

}  // namespace balance::cli
