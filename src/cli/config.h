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

enum class ProxyProtocol { None, V1, V2 };

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
  unsigned threads = 0;                 // --threads, 0 = number of CPUs balance may run on
  std::vector<unsigned> cpus;           // --cpus: worker i pinned to cpus[i] (threads == cpus.size())
  bool cpus_all = false;                // --cpus all: one pinned worker per CPU balance may run on
  unsigned grace_s = 30;                // --grace: how long a stop lets connections finish
  unsigned check_interval_s = 0;        // --check: health-check interval, 0 = no checks
  unsigned rise = 2;                    // --rise: successes that mark a channel up
  unsigned fall = 3;                    // --fall: failures that mark a channel down
  ProxyProtocol proxy_protocol = ProxyProtocol::None;  // --proxy-protocol v1|v2
  std::optional<core::Endpoint> metrics;  // --metrics ADDR:PORT
  bool log_conns = false;               // --log-conns
  // --loopback-cc: the TCP congestion control of balance's sockets whose peer is on this host
  // (a listener bound to a loopback address, channels at one); "" keeps the system's.
  std::string loopback_cc = "cubic";
  bool loopback_cc_given = false;       // named on the command line: an unusable one is an error
  std::string command;                  // -c CMD
  std::vector<GroupSpec> groups;        // Serve mode only
};

}  // namespace balance::cli
