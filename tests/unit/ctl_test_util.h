// Helpers shared by the ctl unit tests: heap tables and endpoints.
#pragma once

#include <arpa/inet.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "core/table.h"

namespace balance::ctl::testing {

inline core::Endpoint endpoint(const std::string& address, uint16_t port) {
  return core::Endpoint::from_numeric(address, port).value_or(core::Endpoint{});
}

inline std::unique_ptr<core::Table> empty_table() {
  auto table = std::make_unique<core::Table>();
  table->init(::getpid(), 0, 0);
  return table;
}

}  // namespace balance::ctl::testing
