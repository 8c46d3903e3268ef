// Outgoing connections on real loopback sockets: the handshake's last ACK held back to leave
// with the first bytes, and sent alone on request (a server that speaks first must not wait).
#include "net/sockets.h"
#include "net_test_util.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace balance::net {
namespace {

struct Listener {
  sockaddr_in addr;
  Fd fd = listen_on_loopback(addr, SOCK_NONBLOCK);
  core::Endpoint at = *core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&addr), sizeof addr);

  Fd accept_now() const { return Fd(::accept4(fd.get(), nullptr, nullptr, SOCK_NONBLOCK)); }
  // A client once its handshake is complete (bounded: invalid after about 100 waits).
  Fd accept_waiting() const {
    Fd accepted;
    for (int i = 0; i < 100 && !accepted; ++i) {
      if (!(accepted = accept_now())) wait_for(fd.get(), POLLIN);
    }
    return accepted;
  }
};

// The first bytes carry the handshake's last ACK: SYN and data, two segments, not three.
// (Should the delayed-ACK timer, 200 ms, strike between connect and send on a loaded machine,
// the ACK leaves alone; a few attempts tell that apart from the ACK never being held.)
TEST(Connect, HandshakeAckRidesOnTheFirstBytes) {
  Listener server;
  uint32_t best = 0;
  for (int attempt = 0; attempt < 5 && best != 2; ++attempt) {
    ConnectResult c = start_connect(server.at, std::nullopt, /*ack_with_data=*/true);
    ASSERT_NE(c.status, ConnectStatus::Failed) << std::strerror(c.error);
    ASSERT_TRUE(wait_for(c.fd.get(), POLLOUT));
    ASSERT_EQ(::send(c.fd.get(), "hello", 5, MSG_NOSIGNAL), 5);
    best = segments_sent(c.fd.get());
    Fd accepted = server.accept_waiting();
    ASSERT_TRUE(accepted);
    char buf[8];
    ASSERT_TRUE(wait_for(accepted.get(), POLLIN));
    EXPECT_EQ(::recv(accepted.get(), buf, sizeof buf, 0), 5);
  }
  EXPECT_EQ(best, 2u);
}

// With nothing to send, send_pending_ack() completes the handshake at once: the server can
// accept (and speak first) right away, without the delayed-ACK timer.
TEST(Connect, PendingAckIsSentOnRequest) {
  Listener server;
  ConnectResult c = start_connect(server.at, std::nullopt, /*ack_with_data=*/true);
  ASSERT_NE(c.status, ConnectStatus::Failed) << std::strerror(c.error);
  ASSERT_TRUE(wait_for(c.fd.get(), POLLOUT));
  send_pending_ack(c.fd.get());
  Fd accepted = server.accept_now();  // loopback: the ACK was processed inside that call
  ASSERT_TRUE(accepted) << std::strerror(errno);
  ASSERT_EQ(::send(accepted.get(), "220 hi\r\n", 8, MSG_NOSIGNAL), 8);
  char buf[16];
  ASSERT_TRUE(wait_for(c.fd.get(), POLLIN));
  EXPECT_EQ(::recv(c.fd.get(), buf, sizeof buf, 0), 8);
}

// Without the option, the handshake completes as usual: the server accepts before any byte.
TEST(Connect, PlainConnectAcksAtOnce) {
  Listener server;
  ConnectResult c = start_connect(server.at, std::nullopt);
  ASSERT_NE(c.status, ConnectStatus::Failed) << std::strerror(c.error);
  ASSERT_TRUE(wait_for(c.fd.get(), POLLOUT));
  Fd accepted = server.accept_waiting();
  EXPECT_TRUE(accepted);
  EXPECT_EQ(segments_sent(c.fd.get()), 2u);  // SYN, ACK
}

// The source address a connection from `from` to `to` arrives with at `server`, or "" when
// the connect fails.
std::string source_seen(const Listener& server, const core::Endpoint& to, const core::Endpoint& from) {
  ConnectResult c = start_connect(to, from);
  if (c.status == ConnectStatus::Failed) return "";
  EXPECT_TRUE(wait_for(c.fd.get(), POLLOUT));
  EXPECT_EQ(socket_error(c.fd.get()), 0);
  Fd accepted = server.accept_waiting();
  if (!accepted) return "accept failed";
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  EXPECT_EQ(::getpeername(accepted.get(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
  return core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len)->address_string();
}

// A v4-mapped -B (::ffff:a.b.c.d) is the IPv4 address it names: it binds the connection to an
// IPv4 channel, and a v4-mapped channel is reached from an IPv4 -B.
TEST(Connect, MappedAddressesActAsTheirIpv4Addresses) {
  Listener server;
  const auto mapped = [](const core::Endpoint& e, const char* v4) {
    return *core::Endpoint::from_numeric(std::string("::ffff:") + v4, e.port);
  };
  const core::Endpoint from_v4 = *core::Endpoint::from_numeric("127.0.0.2", 0);
  const core::Endpoint from_mapped = *core::Endpoint::from_numeric("::ffff:127.0.0.2", 0);
  EXPECT_EQ(source_seen(server, server.at, from_mapped), "127.0.0.2");
  EXPECT_EQ(source_seen(server, mapped(server.at, "127.0.0.1"), from_v4), "127.0.0.2");
  EXPECT_EQ(source_seen(server, mapped(server.at, "127.0.0.1"), from_mapped), "127.0.0.2");
  EXPECT_EQ(source_seen(server, server.at, from_v4), "127.0.0.2");
  // A real IPv6 source still cannot reach an IPv4 channel.
  EXPECT_EQ(start_connect(server.at, *core::Endpoint::from_numeric("::1", 0)).error, EAFNOSUPPORT);
}

// Waits, at most 5 s, until the listener's queue length reads `n` (the server's side of a
// handshake is queued by kernel work that may run a moment after the client's connect returns).
std::optional<unsigned> queue_reaches(int listen_fd, unsigned n) {
  std::optional<unsigned> q = queued_clients(listen_fd);
  for (int i = 0; i < 5000 && q && *q < n; ++i) {
    ::poll(nullptr, 0, 1);
    q = queued_clients(listen_fd);
  }
  return q;
}

// The accept queue's length, read without accepting: none, then one per completed handshake,
// one fewer per accept. A socket that is not listening has no queue to tell.
TEST(Listen, QueuedClientsIsTheAcceptQueueLength) {
  Listener server;
  EXPECT_EQ(queued_clients(server.fd.get()), 0u);
  std::vector<Fd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back(::socket(AF_INET, SOCK_STREAM, 0));
    ASSERT_EQ(::connect(clients.back().get(), reinterpret_cast<const sockaddr*>(&server.addr), sizeof server.addr), 0)
        << std::strerror(errno);
  }
  EXPECT_EQ(queue_reaches(server.fd.get(), 3), 3u);
  Fd accepted = server.accept_now();
  ASSERT_TRUE(accepted) << std::strerror(errno);
  EXPECT_EQ(queued_clients(server.fd.get()), 2u);
  EXPECT_EQ(queued_clients(accepted.get()), std::nullopt);
  EXPECT_EQ(queued_clients(clients[0].get()), std::nullopt);
}


// The system's congestion control, and another one every kernel has to tell it apart.
std::string system_cc() {
  char name[32] = {};
  FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_congestion_control", "r");
  if (f) {
    if (std::fscanf(f, "%31s", name) != 1) name[0] = '\0';
    std::fclose(f);
  }
  return name;
}

std::string other_cc() { return system_cc() == "reno" ? "cubic" : "reno"; }

std::string congestion_of(int fd) {
  char name[16] = {};
  socklen_t len = sizeof name;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) != 0) return "error: " + std::string(std::strerror(errno));
  return std::string(name, ::strnlen(name, len));
}

// --loopback-cc: a connection to a loopback address starts with the algorithm named, before its
// handshake; without a name it keeps the system's.
TEST(Congestion, ConnectToLoopbackUsesTheNamedAlgorithm) {
  Listener server;
  const std::string other = other_cc();
  ConnectResult named = start_connect(server.at, std::nullopt, /*ack_with_data=*/true, other);
  ASSERT_NE(named.status, ConnectStatus::Failed) << std::strerror(named.error);
  EXPECT_EQ(congestion_of(named.fd.get()), other);
  ConnectResult plain = start_connect(server.at, std::nullopt, /*ack_with_data=*/true);
  ASSERT_NE(plain.status, ConnectStatus::Failed) << std::strerror(plain.error);
  EXPECT_EQ(congestion_of(plain.fd.get()), system_cc());
}

// The accepted sockets of a listener that has it inherit it: no call per client.
TEST(Congestion, AcceptedSocketsInheritTheListenersAlgorithm) {
  Listener server;
  const std::string other = other_cc();
  use_loopback_cc(server.fd.get(), server.at, other);
  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&server.addr), sizeof server.addr), 0)
      << std::strerror(errno);
  ASSERT_TRUE(wait_for(server.fd.get(), POLLIN));
  Fd accepted = server.accept_now();
  ASSERT_TRUE(accepted) << std::strerror(errno);
  EXPECT_EQ(congestion_of(accepted.get()), other);
  EXPECT_EQ(congestion_of(client.get()), system_cc());
}

// Only a loopback peer (or a listener bound to loopback) changes: traffic that leaves the host
// keeps the algorithm its administrator chose.
TEST(Congestion, OnlyLoopbackAddressesAreTouched) {
  const std::string other = other_cc();
  for (const char* addr : {"192.0.2.1", "2001:db8::1", "0.0.0.0", "::"}) {
    Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
    use_loopback_cc(fd.get(), *core::Endpoint::from_numeric(addr, 80), other);
    EXPECT_EQ(congestion_of(fd.get()), system_cc()) << addr;
  }
  Fd mapped(::socket(AF_INET, SOCK_STREAM, 0));
  use_loopback_cc(mapped.get(), *core::Endpoint::from_numeric("::ffff:127.0.0.2", 80), other);
  EXPECT_EQ(congestion_of(mapped.get()), other);
}

TEST(Congestion, AnAlgorithmTheKernelLacksIsRefused) {
  EXPECT_EQ(congestion_control_error(other_cc()), 0);
  EXPECT_EQ(congestion_control_error("no_such_cc"), ENOENT);
}

// A connection whose both streams ended leaves its socket to connect again (SocketPool).
struct Pair {
  Fd client;
  Fd server;
};

Pair connect_pair(const Listener& server, const std::string& cc, Fd reused = Fd()) {
  Pair p;
  ConnectResult c = start_connect(server.at, std::nullopt, /*ack_with_data=*/false, cc, std::move(reused));
  EXPECT_NE(c.status, ConnectStatus::Failed) << std::strerror(c.error);
  EXPECT_TRUE(wait_for(c.fd.get(), POLLOUT));
  p.client = std::move(c.fd);
  p.server = server.accept_waiting();
  return p;
}

// What `fd` receives until its peer's FIN (or 5 s without a byte).
std::string read_to_eof(int fd) {
  std::string got;
  char buf[256];
  while (wait_for(fd, POLLIN)) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return got;
    if (n < 0 && errno != EAGAIN) return got + "<error: " + std::strerror(errno) + ">";
    if (n > 0) got.append(buf, static_cast<size_t>(n));
  }
  return got + "<no end>";
}

std::string read_some(int fd) {
  char buf[256];
  if (!wait_for(fd, POLLIN)) return "<nothing>";
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "<end or error>";
}

int int_option(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  EXPECT_EQ(::getsockopt(fd, level, name, &v, &len), 0) << std::strerror(errno);
  return v;
}

// `up` from client to server, then `down` back (if any).
void exchange(const Pair& p, const std::string& up, const std::string& down) {
  ASSERT_EQ(::send(p.client.get(), up.data(), up.size(), MSG_NOSIGNAL), static_cast<ssize_t>(up.size()));
  EXPECT_EQ(read_some(p.server.get()), up);
  if (down.empty()) return;
  ASSERT_EQ(::send(p.server.get(), down.data(), down.size(), MSG_NOSIGNAL), static_cast<ssize_t>(down.size()));
  EXPECT_EQ(read_some(p.client.get()), down);
}

// The server ends first (an HTTP/1.0 backend): after its FIN the client's end is sent, and once
// both are acknowledged the socket connects again, with the options start_connect() gave it.
TEST(Reuse, ASocketWhoseConnectionIsOverConnectsAgainWithItsOptions) {
  Listener server;
  const std::string cc = other_cc();
  Pair first = connect_pair(server, cc);
  ASSERT_TRUE(first.client && first.server);
  exchange(first, "ping", "pong");
  first.server.reset();  // close: the server's FIN
  EXPECT_EQ(read_to_eof(first.client.get()), "");
  ASSERT_TRUE(disconnect_if_over(first.client.get()));
  const int fd = first.client.get();
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(int_option(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(int_option(fd, SOL_SOCKET, SO_OOBINLINE), 1);
  EXPECT_EQ(congestion_of(fd), cc);

  Pair second = connect_pair(server, cc, std::move(first.client));
  ASSERT_TRUE(second.client && second.server);
  EXPECT_EQ(second.client.get(), fd);  // the same socket
  exchange(second, "again", "and again");
  ::shutdown(second.client.get(), SHUT_WR);
  EXPECT_EQ(read_to_eof(second.server.get()), "");  // its end of stream arrives as on any connection
}

// The client ends first: its FIN went out before the server's, which then closed the connection
// (TIME_WAIT keeps the old addresses; the socket itself is free to connect again).
TEST(Reuse, AfterTheClientEndedFirst) {
  Listener server;
  Pair first = connect_pair(server, "");
  ASSERT_TRUE(first.client && first.server);
  exchange(first, "request", "");
  ::shutdown(first.client.get(), SHUT_WR);
  EXPECT_EQ(read_to_eof(first.server.get()), "");
  ASSERT_EQ(::send(first.server.get(), "bye", 3, MSG_NOSIGNAL), 3);
  first.server.reset();
  EXPECT_EQ(read_to_eof(first.client.get()), "bye");
  ASSERT_TRUE(disconnect_if_over(first.client.get()));
  Pair second = connect_pair(server, "", std::move(first.client));
  ASSERT_TRUE(second.client && second.server);
  exchange(second, "next", "answer");
}

// A connection that is not over (the server has not ended its stream) is only shut down: the
// server gets the end of stream and can still answer, and the caller closes the socket as usual.
TEST(Reuse, AConnectionThatIsNotOverIsNotDisconnected) {
  Listener server;
  Pair p = connect_pair(server, "");
  ASSERT_TRUE(p.client && p.server);
  exchange(p, "question", "");
  EXPECT_FALSE(disconnect_if_over(p.client.get()));
  EXPECT_EQ(read_to_eof(p.server.get()), "");  // the end of stream reached the server
  ASSERT_EQ(::send(p.server.get(), "late answer", 11, MSG_NOSIGNAL), 11);
  p.server.reset();
  EXPECT_EQ(read_to_eof(p.client.get()), "late answer");  // and nothing was cut
}

}  // namespace
}  // namespace balance::net
