// Helpers shared by the ctl unit tests: heap tables and endpoints.
#pragma once

#include <arpa/inet.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "core/table.h"

namespace balance::ctl::testing {

inline core::Endpoint endpoint(const std::string& address, uint16_t port) {
  core::Endpoint e;
  e.port = port;
  if (inet_pton(AF_INET, address.c_str(), e.addr.data()) == 1) {
    e.family = AF_INET;
  } else if (inet_pton(AF_INET6, address.c_str(), e.addr.data()) == 1) {
    e.family = AF_INET6;
  }
  return e;
}

inline std::unique_ptr<core::Table> empty_table() {
  auto table = std::make_unique<core::Table>();
  table->init(::getpid(), 0, 0);
  return table;
}

}  // namespace balance::ctl::testing
