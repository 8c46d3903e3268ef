// The seam to the socket API: creating listeners and outgoing connections, socket options.
// Everything returns errno-style results; nothing throws.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/endpoint.h"
#include "core/failure.h"
#include "net/fd.h"

namespace balance::net {

struct ListenSpec {
  std::optional<core::Endpoint> bind;  // nullopt: all addresses, dual stack
  uint16_t port = 0;
  bool force_ipv6 = false;
  std::string loopback_cc;  // congestion control of a listener bound to a loopback address ("": the system's)
};

// `count` bound, listening, non-blocking sockets on the same address and port (SO_REUSEPORT: the
// kernel spreads new connections over them, one per worker), or a Failure naming the address and
// the reason. The port must be free: a probe bind without SO_REUSEPORT checks that first, since
// SO_REUSEPORT alone would let a second instance of the same user join silently. They have
// TCP_NODELAY and SO_KEEPALIVE set, which every accepted socket inherits.
// Bound to a loopback address, they have `spec.loopback_cc` too (use_loopback_cc()).
std::vector<Fd> make_listeners(const ListenSpec& spec, unsigned count, Failure& failure);

// The congestion control of a socket whose peer is on this host. On loopback there is no
// congestion to control, and the system's algorithm may cost a great deal: BBR without the fq
// qdisc paces every socket with a timer of its own, which halved a loopback stream here
// (docs/PERFORMANCE.md). Sets `name` (TCP_CONGESTION) when `name` is not empty and `where` (the
// peer, or the address a listener is bound to, whose accepted sockets inherit it) is a loopback
// address; otherwise, or if the kernel refuses, the socket keeps the system's algorithm.
void use_loopback_cc(int fd, const core::Endpoint& where, std::string_view name);

// 0 if a TCP socket can be given congestion control `name`, else why not (errno): ENOENT for an
// algorithm the kernel does not have, EPERM for one not in tcp_allowed_congestion_control.
int congestion_control_error(std::string_view name);

// How many clients wait in a listening socket's accept queue (TCP_INFO), or nullopt if the
// kernel does not say. Cheaper than the accept4() that finds the queue empty: that call creates
// the new socket's file before it looks (about 6 µs here, bench/proto/kernel_costs.cpp).
std::optional<unsigned> queued_clients(int listen_fd);

// TCP_NODELAY and SO_KEEPALIVE, as on both sockets of every proxied connection, and SO_OOBINLINE,
// which the relay needs (an urgent byte stays in its place in the stream; relay.h).
void set_stream_options(int fd);

// Which CPU's connections a listener of a SO_REUSEPORT group takes (SO_INCOMING_CPU): the kernel
// hands a new connection to the listener that names the CPU its SYN was processed on, if any
// does, else picks one by hash. -1 names none. 0 or errno.
int set_incoming_cpu(int listen_fd, int cpu);

// True if `fd` is a listening TCP socket (IPv4 or IPv6).
bool is_tcp_listener(int fd);

enum class ConnectStatus { Connected, InProgress, Failed };

struct ConnectResult {
  Fd fd;
  ConnectStatus status = ConnectStatus::Failed;
  int error = 0;  // errno when Failed
};

// Starts a non-blocking connect to `to`, binding to `from` first when given (v4-mapped
// addresses of either are taken as the IPv4 addresses they are; EAFNOSUPPORT when the two are
// of different families). With
// `ack_with_data`, the last ACK of the handshake is held back (TCP_QUICKACK off) to leave with
// the first bytes sent; the caller must send_pending_ack() if it has nothing to send at once, or
// a server that speaks first would wait for the delayed-ACK timer (up to 200 ms) to accept, and
// before the server's first bytes are read, to leave the delayed-ACK mode that holding it set.
// `loopback_cc`: use_loopback_cc() for this peer. `reused`: a socket disconnected by
// disconnect_if_over() to connect instead of a new one; its options are still set (it must be of
// the same kind, SocketKind, and `from` must be unset: a bound socket is not kept).
ConnectResult start_connect(const core::Endpoint& to, const std::optional<core::Endpoint>& from,
                            bool ack_with_data = false, std::string_view loopback_cc = {}, Fd reused = Fd());

// Ends the connection of `fd`, whose two streams are over, so that the socket can be connected
// again: shuts down its write side (the FIN, unless sent already) and, if the connection is then
// over (state CLOSE: both FINs sent and acknowledged, and with them every byte sent), disconnects
// it (connect() with AF_UNSPEC). False when it is not over yet, as when a peer across a network
// has still to acknowledge the FIN: the caller closes the socket as usual, and TCP finishes the
// end. Disconnecting before that would leave the FIN without a retransmission.
bool disconnect_if_over(int fd);

// Sends an ACK that TCP is holding back, e.g. the handshake's last one, and leaves delayed-ACK
// mode (TCP_QUICKACK on): the data that comes next is acknowledged on arrival.
void send_pending_ack(int fd);

// Failures of this host rather than of the peer (out of descriptors, memory or local ports):
// a connect to any other peer would fail the same way, and the peer is not to blame.
bool is_local_resource_error(int err);

// 0 if a TCP socket can be bound to `local` (its port ignored) now, else why not (errno): an
// address that is not this host's gives EADDRNOTAVAIL.
int local_bind_error(const core::Endpoint& local);

// The pending error of a socket (SO_ERROR), 0 when connected.
int socket_error(int fd);

// The bytes in a socket's send queue that its peer has not acknowledged yet (SIOCOUTQ; a FIN
// counts as one); 0 when the kernel does not say.
size_t unacked_bytes(int fd);

// Makes the next close() of `fd` send a reset instead of a FIN.
void set_reset_on_close(int fd);

// Local address of a socket, for messages.
std::optional<core::Endpoint> local_endpoint(int fd);

}  // namespace balance::net
