// Helpers shared by the metrics unit tests: heap tables filled like a running instance.
#pragma once

#include <arpa/inet.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/table.h"

namespace balance::metrics::testing {

inline core::Endpoint endpoint(const std::string& address, uint16_t port) {
  return core::Endpoint::from_numeric(address, port).value_or(core::Endpoint{});
}

inline std::unique_ptr<core::Table> empty_table(int64_t start_time = 1700000000) {
  auto table = std::make_unique<core::Table>();
  table->init(1234, 0, start_time);
  table->header.threads.store(2);
  return table;
}

struct Counters {
  uint32_t c = 0;
  uint64_t totalc = 0, failures = 0, sent = 0, rcvd = 0;
};

inline void set_counters(core::Channel& ch, const Counters& v) {
  ch.c.store(v.c);
  ch.totalc.store(v.totalc);
  ch.failures.store(v.failures);
  ch.sent.store(v.sent);
  ch.rcvd.store(v.rcvd);
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace balance::metrics::testing
