// Accepts clients on one listening socket (normally this worker's own SO_REUSEPORT socket; if
// several workers share one, EPOLLEXCLUSIVE wakes one of them per new connection) and hands
// each to a new Session on this worker.
//
// A listener bound to a loopback address gives its clients the loopback congestion control
// (--loopback-cc) by inheritance; one bound to all addresses may take clients from anywhere, so
// the acceptor sets it on each client that comes from this host (one setsockopt per such client).
//
// Descriptor exhaustion (EMFILE/ENFILE) never spins: the worker's kept sockets (SocketPool) are
// closed first; then a spare descriptor is given up to accept and close the waiting client at
// once (it sees a clean close, not a hang), and if even that fails the acceptor stops listening
// for a short pause.
#pragma once

#include "net/fd.h"
#include "net/loop.h"
#include "net/timer_wheel.h"

namespace balance::net {

class Worker;

class Acceptor final : public Watch {
 public:
  Acceptor(Worker& worker, int listen_fd);
  ~Acceptor();
  void on_events(uint32_t events) override;

 private:
  bool accept_one();
  void shed_one();
  void pause();
  void resume();

  Worker& worker_;
  int listen_fd_;
  bool cc_per_client_;  // loopback clients need --loopback-cc set: the listener's is not theirs
  Fd spare_;
  bool listening_ = false;
  TimerHook pause_timer_;
};

}  // namespace balance::net
