// Backend sockets kept for the next connect. A TCP socket whose connection is over (both FINs
// sent and acknowledged: state CLOSE) can be disconnected (connect() with AF_UNSPEC) and
// connected again, its options still set. Connecting a kept socket instead of a new one saves
// the allocation and release of the socket, its file and inode, and the setsockopt() calls of
// its options: about 6-9 % of balance's CPU per connection through a loopback backend
// (docs/PERFORMANCE.md). Only a finished connection's socket is kept (disconnect_if_over()), so
// no byte and no end of stream is cut short.
//
// Like the pipe pool, it holds sockets only while connections are under way: the worker empties
// it when its last connection ends (descriptors back to their baseline), and when descriptors
// run out.
//
// A kept socket stays in the loop's epoll set, registered once for its whole life: while kept it
// is parked, its events going to no watch (a disconnected socket reports EPOLLHUP once; see
// EventLoop::park()); the session that takes it aims them at itself (EventLoop::retarget()). Two
// EPOLL_CTL_MODs per reuse instead of a DEL and an ADD, and no event can reach a session that no
// longer owns the socket: epoll reads the socket's state afresh when it reports it, to the watch
// named then.
//
// Threading: one pool per worker thread, used only there.
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "core/endpoint.h"
#include "net/fd.h"
#include "net/loop.h"

namespace balance::net {

// What a socket for a connect to one address is made with: its family, and whether it has the
// loopback congestion control (use_loopback_cc()). Kept sockets serve only a connect of the same kind.
struct SocketKind {
  int family = 0;
  bool loopback_cc = false;
};
SocketKind socket_kind(const core::Endpoint& to, std::string_view loopback_cc);

class SocketPool {
 public:
  static constexpr size_t kMaxIdle = 16;  // sockets kept per kind; more are closed

  explicit SocketPool(EventLoop& loop) : loop_(loop) {}
  SocketPool(const SocketPool&) = delete;
  SocketPool& operator=(const SocketPool&) = delete;
  ~SocketPool() { clear(); }

  // A kept socket of `kind`, or an invalid Fd when there is none. It is still in the loop's epoll
  // set (parked): its new owner retargets it rather than adding it.
  Fd take(SocketKind kind);
  // Keeps `fd`, a disconnected socket of `kind` that the loop watches, or closes it if the pool
  // is full.
  void keep(Fd fd, SocketKind kind);
  size_t idle() const;
  // Closes every kept socket; true if there was any (descriptors to be had again).
  bool clear();

 private:
  std::vector<Fd>& slot(SocketKind kind);
  EventLoop& loop_;
  std::array<std::vector<Fd>, 4> idle_;  // v4, v4 with loopback cc, v6, v6 with loopback cc
};

}  // namespace balance::net
