#include "net/sockets.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

namespace balance::net {
namespace {

void set_int_option(int fd, int level, int name, int value) {
  ::setsockopt(fd, level, name, &value, sizeof value);
}

int set_congestion_control(int fd, std::string_view name) {
  return ::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(), static_cast<socklen_t>(name.size())) == 0 ? 0
                                                                                                           : errno;
}

std::string describe(const ListenSpec& spec) {
  if (!spec.bind) return "port " + std::to_string(spec.port);
  core::Endpoint e = *spec.bind;
  e.port = spec.port;
  return e.to_string();
}

// The address a listener binds: -b, or all addresses (IPv6 dual stack, IPv4 on a kernel without IPv6).
core::Endpoint listen_address(const ListenSpec& spec) {
  core::Endpoint addr;
  if (spec.bind) {
    addr = *spec.bind;
  } else {
    addr.family = AF_INET6;  // in6addr_any
    Fd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe && !spec.force_ipv6 && errno == EAFNOSUPPORT) addr.family = AF_INET;
  }
  addr.port = spec.port;
  return addr;
}

// One socket bound to `addr`, listening when `listen_too`; an invalid Fd with `failure` filled otherwise.
Fd bind_one(const ListenSpec& spec, const core::Endpoint& addr, bool reuseport, bool listen_too, Failure& failure) {
  Fd fd(::socket(addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    failure = {kExitOsErr, std::string("cannot create listening socket: ") + std::strerror(errno) + ", exiting."};
    return Fd();
  }
  set_int_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  if (reuseport) set_int_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1);
  // Accepted sockets inherit these from the listener: two setsockopt calls fewer per client.
  set_stream_options(fd.get());
  use_loopback_cc(fd.get(), addr, spec.loopback_cc);
  if (addr.family == AF_INET6) set_int_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 0);
  sockaddr_storage ss;
  const socklen_t len = addr.to_sockaddr(ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    failure = {kExitOsErr, "cannot bind to " + describe(spec) + ": " + std::strerror(errno) + ", exiting."};
    return Fd();
  }
  if (listen_too && ::listen(fd.get(), SOMAXCONN) != 0) {
    failure = {kExitOsErr, "cannot listen on " + describe(spec) + ": " + std::strerror(errno) + ", exiting."};
    return Fd();
  }
  return fd;
}

}  // namespace

std::vector<Fd> make_listeners(const ListenSpec& spec, unsigned count, Failure& failure) {
  const core::Endpoint addr = listen_address(spec);
  if (!bind_one(spec, addr, false, false, failure)) return {};  // the port is someone else's
  std::vector<Fd> fds;
  for (unsigned i = 0; i < std::max(count, 1u); ++i) {
    Fd fd = bind_one(spec, addr, true, true, failure);
    if (!fd) return {};
    fds.push_back(std::move(fd));
  }
  return fds;
}

void use_loopback_cc(int fd, const core::Endpoint& where, std::string_view name) {
  if (!name.empty() && where.is_loopback()) set_congestion_control(fd, name);
}

int congestion_control_error(std::string_view name) {
  Fd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return probe ? set_congestion_control(probe.get(), name) : errno;
}

void set_stream_options(int fd) {
  set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  set_int_option(fd, SOL_SOCKET, SO_OOBINLINE, 1);
}

int set_incoming_cpu(int listen_fd, int cpu) {
  return ::setsockopt(listen_fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, sizeof cpu) == 0 ? 0 : errno;
}

bool is_tcp_listener(int fd) {
  int listening = 0;
  int type = 0;
  int domain = 0;
  int protocol = 0;
  socklen_t len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening == 0) return false;
  len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || (domain != AF_INET && domain != AF_INET6)) {
    return false;
  }
  len = sizeof protocol;
  return ::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 && protocol == IPPROTO_TCP;
}

ConnectResult start_connect(const core::Endpoint& to_in, const std::optional<core::Endpoint>& from, bool ack_with_data,
                            std::string_view loopback_cc, Fd reused) {
  ConnectResult r;
  // A v4-mapped channel ([::ffff:a.b.c.d]) is the IPv4 host it names: reached over IPv4, so a
  // -B of either notation can bind the socket, and it works where IPv6 is off.
  const core::Endpoint to = to_in.unmapped();
  sockaddr_storage ss;
  const socklen_t len = to.to_sockaddr(ss);
  if (len == 0) {
    r.error = EAFNOSUPPORT;
    return r;
  }
  if (reused) {
    r.fd = std::move(reused);
  } else {
    r.fd.reset(::socket(to.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!r.fd) {
      r.error = errno;
      return r;
    }
    set_stream_options(r.fd.get());
    use_loopback_cc(r.fd.get(), to, loopback_cc);  // before connect: the handshake starts with it
  }
  if (ack_with_data) set_int_option(r.fd.get(), IPPROTO_TCP, TCP_QUICKACK, 0);
  if (from) {
    // Choose the port at connect time, so binding does not use up ephemeral ports early.
    set_int_option(r.fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
    sockaddr_storage local;
    core::Endpoint f = from->unmapped();
    f.port = 0;
    const socklen_t local_len = f.to_sockaddr(local);
    if (f.family != to.family || ::bind(r.fd.get(), reinterpret_cast<sockaddr*>(&local), local_len) != 0) {
      r.error = f.family != to.family ? EAFNOSUPPORT : errno;
      r.fd.reset();
      return r;
    }
  }
  if (::connect(r.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    r.status = ConnectStatus::Connected;
  } else if (errno == EINPROGRESS) {
    r.status = ConnectStatus::InProgress;
  } else {
    r.error = errno;
    r.fd.reset();
  }
  return r;
}

bool disconnect_if_over(int fd) {
  ::shutdown(fd, SHUT_WR);  // ENOTCONN when the peer's FIN closed it already (our FIN went first)
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 || info.tcpi_state != TCP_CLOSE) return false;
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  return ::connect(fd, &unspec, sizeof unspec) == 0;
}

bool is_local_resource_error(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM || err == EADDRNOTAVAIL;
}

int local_bind_error(const core::Endpoint& local) {
  core::Endpoint e = local.unmapped();
  e.port = 0;
  sockaddr_storage ss;
  const socklen_t len = e.to_sockaddr(ss);
  if (len == 0) return EAFNOSUPPORT;
  Fd fd(::socket(e.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno;
  set_int_option(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);  // takes no port
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

size_t unacked_bytes(int fd) {
  int n = 0;
  if (::ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0) return 0;
  return static_cast<size_t>(n);
}

std::optional<unsigned> queued_clients(int listen_fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(listen_fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 || info.tcpi_state != TCP_LISTEN) {
    return std::nullopt;
  }
  return info.tcpi_unacked;  // for a listener: the children ready for accept()
}

void send_pending_ack(int fd) { set_int_option(fd, IPPROTO_TCP, TCP_QUICKACK, 1); }

void set_reset_on_close(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

std::optional<core::Endpoint> local_endpoint(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace balance::net
