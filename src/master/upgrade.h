// Upgrade in place (SIGUSR2): the running master starts the program's binary anew with the same
// arguments and hands it the listening socket and the control segment (whose descriptor carries
// the master's liveness lock). The new master serves from the same socket and the same shared
// table (admin state, maxc, channels created at runtime, counters); once it reports that it
// serves, the old master stops accepting and drains. Both accept from the one socket during the
// hand-over, so no client is refused. The --metrics socket is handed over the same way.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/failure.h"
#include "net/fd.h"

namespace balance::master {

// What a new master inherited from the old one (environment variable BALANCE_UPGRADE).
struct Inheritance {
  std::vector<net::Fd> listeners;
  net::Fd metrics;  // the --metrics socket, if the old master had one
  int segment_fd = -1;
  net::Fd report;  // write "0" or "<code>\t<message>" once serving or failed
};

// The inheritance of this process, if it was started by an upgrade (and clears the variable).
std::optional<Inheritance> inherited();

// Remembers the binary's path and arguments at start-up, for a later upgrade.
void remember_invocation(int argc, const char* const* argv);

// What may cut the wait for the new master short: when `fd` is readable, `cancel` is called;
// true gives the upgrade up.
struct Interruption {
  int fd = -1;
  std::function<bool()> cancel;
  std::function<void()> waiting;  // runs at least once a second meanwhile (the watchdog's tick)
};

// Old master: starts the new master and waits (bounded) for its report. Returns its pid when it
// serves; nullopt (with `failure` filled, logged by the caller) when it did not, or when the
// wait was cancelled (the new master, which has not reported yet, is killed then).
// `metrics_fd` is the --metrics socket, -1 without one.
std::optional<int> start_successor(const std::vector<int>& listen_fds, int metrics_fd, int segment_fd,
                                   const Interruption& interruption, Failure& failure);

// New master: tells the old one that start-up went well (nullopt) or not.
void report_to_predecessor(Inheritance& inheritance, const std::optional<Failure>& failure);

}  // namespace balance::master
