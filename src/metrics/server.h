// The --metrics HTTP endpoint: GET /metrics (Prometheus), GET /status.json, GET / (the status
// page). Anything else is 404; methods other than GET and HEAD are 405 (a method name httplib
// does not know is 400).
//
// Threading contract: the server runs on its own threads (one listening, a small pool serving
// requests), started by start() and stopped and joined by the destructor. They only read the
// table with relaxed atomic loads and take no lock a worker takes, so a slow or busy scraper
// never slows the data path; a connection is served for at most 10 s, and stopping cuts it, so
// no client delays a stop or an upgrade either. Stop signals are blocked in these threads: the
// master handles them.
//
// The listening socket is balance's own (non-blocking, polled with a wake-up descriptor), not
// httplib's accept loop, whose only way to stop is to shut the socket down: an upgrade hands the
// socket to the new master, and both accept from it until the old one stops (stop_accepting()).
#pragma once

#include <cstdint>
#include <memory>

#include "core/endpoint.h"
#include "core/failure.h"
#include "core/table.h"

namespace balance::metrics {

class Server {
 public:
  // Binds `addr` (port 0: any free port) and starts serving `table`, which must outlive the
  // server. On failure (the address is in use, not local, ...) returns nullptr and fills
  // `failure` (exit 71, one line).
  static std::unique_ptr<Server> start(const core::Endpoint& addr, const core::Table& table, Failure& failure);

  // Serves `table` on `listen_fd`, a listening socket inherited from the master being upgraded
  // (taken over: closed by the server). nullptr with `failure` when it is not one.
  static std::unique_ptr<Server> adopt(int listen_fd, const core::Table& table, Failure& failure);

  // Stops accepting, cuts the connections still being served (a request still arriving, an
  // answer still being written) and joins every thread: it returns promptly whatever the
  // clients do.
  ~Server();

  // The port it listens on (the one chosen by the system when `addr` had port 0).
  uint16_t port() const;

  // The listening socket, for the new master of an upgrade to copy and adopt().
  int listen_fd() const;

  // An upgrade's old master, once the new one serves: stops accepting and closes its descriptor
  // of the listening socket, which the new master goes on accepting from, so no scrape is
  // refused; the connections already accepted are answered (the destructor cuts what is left).
  void stop_accepting();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace balance::metrics
