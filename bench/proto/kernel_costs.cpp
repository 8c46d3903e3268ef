// kernel_costs: what entering the kernel and switching tasks cost on this machine, the two prices
// behind every technique of docs/PERFORMANCE.md (a syscall saved, a wake-up or a preemption
// avoided), and the price of each call that one of those techniques saves. Prints:
//   - a syscall that does nothing (getppid), in ns;
//   - a round trip through two pipes between two processes on the same CPU (two context
//     switches, four syscalls), in µs;
//   - the same round trip with the processes on two CPUs (two cross-CPU wake-ups), in µs;
//   - recv() on a loopback TCP socket with nothing to read (EAGAIN), in ns: the read that
//     "a short read taken as empty" skips;
//   - accept4() on a listener with nothing queued (EAGAIN), in ns: the call that used to end a
//     batch of accepts, against getsockopt(TCP_INFO), which tells the queue's length instead;
//   - epoll_wait() that returns one ready socket at once, in ns: the extra call per connection
//     of one accept per wake-up instead of a batch;
//   - epoll_ctl ADD and DEL of a connected loopback socket, in ns: what a kept backend socket
//     pays to be watched for its next connection, against one MOD that points its registration
//     at another watcher;
//   - a timer per connection as its own timerfd (create, watch in epoll, arm, disarm, close),
//     in ns, against arming and cancelling a hook of balance's timer wheel;
//   - a connection to a loopback listener, from connect to the end of both streams, made with a
//     new socket each time (socket, options, connect, close) against one socket kept and
//     connected again (disconnect_if_over(), SocketPool), in us.
//
// usage: kernel_costs [ROUNDS]   (default 200000; each line takes about ROUNDS x its cost)

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/endpoint.h"
#include "net/fd.h"
#include "net/sockets.h"
#include "net/timer_wheel.h"

namespace {

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// Parent on `cpu_a`, child on `cpu_b`; one byte goes there and back `rounds` times.
// Returns µs per round trip, or a negative value when the processes could not be set up.
double ping_pong(int cpu_a, int cpu_b, long rounds) {
  int there[2], back[2];
  if (pipe(there) != 0 || pipe(back) != 0) return -1;
  const pid_t child = fork();
  if (child < 0) return -1;
  char byte = 'x';
  if (child == 0) {
    if (!pin(cpu_b)) _exit(1);
    for (long i = 0; i < rounds; ++i) {
      if (read(there[0], &byte, 1) != 1 || write(back[1], &byte, 1) != 1) _exit(1);
    }
    _exit(0);
  }
  double us = -1;
  if (pin(cpu_a)) {
    const auto start = Clock::now();
    long i = 0;
    for (; i < rounds; ++i) {
      if (write(there[1], &byte, 1) != 1 || read(back[0], &byte, 1) != 1) break;
    }
    if (i == rounds) us = ns_since(start) / 1000.0 / static_cast<double>(rounds);
  }
  for (int fd : {there[0], there[1], back[0], back[1]}) close(fd);  // a stuck child reads EOF
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? us : -1;
}

// A TCP socket listening on 127.0.0.1 on a port the kernel picks (`a` gets the address), or an
// invalid one. `type_flags` go to socket() (e.g. SOCK_NONBLOCK).
balance::net::Fd listen_on_loopback(sockaddr_in& a, int type_flags) {
  balance::net::Fd listener(::socket(AF_INET, SOCK_STREAM | type_flags, 0));
  a = sockaddr_in{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!listener || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 ||
      ::listen(listener.get(), 64) != 0 || ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return balance::net::Fd();
  }
  return listener;
}

// A loopback TCP listener (non-blocking, nothing queued), a connection to it, and the accepted
// end of that connection (non-blocking, nothing to read).
struct LoopbackPair {
  balance::net::Fd listener, client, server;
  bool ok = false;

  LoopbackPair() {
    sockaddr_in a;
    listener = listen_on_loopback(a, SOCK_NONBLOCK);
    client = balance::net::Fd(::socket(AF_INET, SOCK_STREAM, 0));
    if (!listener || !client || ::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    pollfd queued{listener.get(), POLLIN, 0};  // the handshake may complete a moment later
    if (::poll(&queued, 1, 5000) != 1) return;
    server = balance::net::Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK));
    ok = static_cast<bool>(server);
  }
};

// ns per call of `call`, which must return true (the expected result) every time; -1 otherwise.
template <typename Call>
double ns_per_call(long rounds, Call call) {
  const auto start = Clock::now();
  for (long i = 0; i < rounds; ++i) {
    if (!call()) return -1;
  }
  return ns_since(start) / static_cast<double>(rounds);
}

double eagain_recv_ns(const LoopbackPair& p, long rounds) {
  std::vector<char> buf(65536);
  return ns_per_call(rounds, [&] { return ::recv(p.server.get(), buf.data(), buf.size(), 0) < 0 && errno == EAGAIN; });
}

double eagain_accept_ns(const LoopbackPair& p, long rounds) {
  return ns_per_call(rounds, [&] {
    return ::accept4(p.listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC) < 0 && errno == EAGAIN;
  });
}

double listener_tcp_info_ns(const LoopbackPair& p, long rounds) {
  tcp_info info{};
  return ns_per_call(rounds, [&] {
    socklen_t len = sizeof info;
    return ::getsockopt(p.listener.get(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state == TCP_LISTEN;
  });
}

// One byte waits unread on the accepted socket, watched level-triggered: every call reports it.
double ready_epoll_wait_ns(const LoopbackPair& p, long rounds) {
  balance::net::Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (!ep || ::send(p.client.get(), "x", 1, 0) != 1 || ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, p.server.get(), &ev) != 0) {
    return -1;
  }
  epoll_event out[256];
  const double ns = ns_per_call(rounds, [&] { return ::epoll_wait(ep.get(), out, 256, 0) == 1; });
  char byte;
  return ::recv(p.server.get(), &byte, 1, 0) == 1 ? ns : -1;
}

// A connected socket watched (ADD, with the session's events) and no longer (DEL), or, with `mod`,
// its registration pointed elsewhere (MOD) instead.
double epoll_watch_ns(const LoopbackPair& p, long rounds, bool mod) {
  balance::net::Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  if (!ep || (mod && ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, p.client.get(), &ev) != 0)) return -1;
  return ns_per_call(rounds, [&] {
    ++ev.data.u64;
    if (mod) return ::epoll_ctl(ep.get(), EPOLL_CTL_MOD, p.client.get(), &ev) == 0;
    return ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, p.client.get(), &ev) == 0 &&
           ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, p.client.get(), nullptr) == 0;
  });
}

// What a connection would pay for its connect timeout with a timer of its own.
double timerfd_per_connection_ns(long rounds) {
  balance::net::Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return -1;
  return ns_per_call(rounds, [&] {
    balance::net::Fd t(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    itimerspec arm{};
    arm.it_value.tv_sec = 5;
    const itimerspec disarm{};
    return t && ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, t.get(), &ev) == 0 &&
           ::timerfd_settime(t.get(), 0, &arm, nullptr) == 0 && ::timerfd_settime(t.get(), 0, &disarm, nullptr) == 0;
  });
}

// The same with balance's wheel: one hook armed and cancelled (the callback captures a pointer,
// as the session's do).
double wheel_per_connection_ns(long rounds) {
  balance::net::TimerWheel wheel(0);
  balance::net::TimerHook hook;
  long fired = 0;
  const double ns = ns_per_call(rounds, [&] {
    wheel.schedule(hook, 5000, [&fired] { ++fired; });
    wheel.cancel(hook);
    return !hook.armed();
  });
  return fired == 0 ? ns : -1;
}

// µs per connection to a loopback listener and its end: connect (balance's start_connect()),
// accept, the server closes, the client reads the end and ends its side: close() (`keep`
// false) or disconnect_if_over() and the next connect on the same socket (`keep` true).
double connection_us(long connections, bool keep) {
  sockaddr_in a;
  const balance::net::Fd listener = listen_on_loopback(a, 0);
  if (!listener) return -1;
  const auto to = balance::core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&a), sizeof a);
  balance::net::Fd kept;
  char byte;
  const auto start = Clock::now();
  for (long i = 0; i < connections; ++i) {
    balance::net::ConnectResult c = balance::net::start_connect(*to, std::nullopt, false, "cubic", std::move(kept));
    pollfd out{c.fd.get(), POLLOUT, 0};
    if (c.status == balance::net::ConnectStatus::Failed || ::poll(&out, 1, 5000) != 1) return -1;
    balance::net::Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!server) return -1;
    server.reset();  // its FIN
    pollfd in{c.fd.get(), POLLIN, 0};
    if (::poll(&in, 1, 5000) != 1 || ::recv(c.fd.get(), &byte, 1, 0) != 0) return -1;
    if (keep) {
      if (!balance::net::disconnect_if_over(c.fd.get())) return -1;
      kept = std::move(c.fd);
    }
  }
  return ns_since(start) / 1000.0 / static_cast<double>(connections);
}

}  // namespace

int main(int argc, char** argv) {
  const long rounds = argc > 1 ? std::atol(argv[1]) : 200000;
  if (rounds <= 0 || rounds > 100000000) {
    std::fprintf(stderr, "usage: kernel_costs [ROUNDS]  (1 to 100000000)\n");
    return 2;
  }
  const auto start = Clock::now();
  for (long i = 0; i < rounds * 10; ++i) syscall(SYS_getppid);
  std::printf("syscall (getppid): %.0f ns\n", ns_since(start) / static_cast<double>(rounds * 10));
  const double same = ping_pong(0, 0, rounds);
  const double cross = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? ping_pong(0, 1, rounds) : -1;
  if (same < 0) {
    std::fprintf(stderr, "kernel_costs: cannot run two pinned processes here\n");
    return 1;
  }
  std::printf("pipe round trip, one CPU: %.2f us\n", same);
  if (cross >= 0) std::printf("pipe round trip, two CPUs: %.2f us\n", cross);

  const LoopbackPair pair;
  const double recv_ns = pair.ok ? eagain_recv_ns(pair, rounds) : -1;
  const double accept_ns = pair.ok ? eagain_accept_ns(pair, rounds) : -1;
  const double info_ns = pair.ok ? listener_tcp_info_ns(pair, rounds) : -1;
  const double epoll_ns = pair.ok ? ready_epoll_wait_ns(pair, rounds) : -1;
  const double watch_ns = pair.ok ? epoll_watch_ns(pair, rounds, false) : -1;
  const double rewatch_ns = pair.ok ? epoll_watch_ns(pair, rounds, true) : -1;
  const double timerfd_ns = timerfd_per_connection_ns(rounds);
  const double wheel_ns = wheel_per_connection_ns(rounds);
  const long connections = std::max(rounds / 20, 10L);
  const double new_us = connection_us(connections, false);
  const double kept_us = connection_us(connections, true);
  if (recv_ns < 0 || accept_ns < 0 || info_ns < 0 || epoll_ns < 0 || watch_ns < 0 || rewatch_ns < 0 ||
      timerfd_ns < 0 || wheel_ns < 0 || new_us < 0 || kept_us < 0) {
    std::fprintf(stderr, "kernel_costs: a loopback socket, epoll or timerfd call did not behave as expected\n");
    return 1;
  }
  std::printf("recv, nothing to read (EAGAIN): %.0f ns\n", recv_ns);
  std::printf("accept4, nothing queued (EAGAIN): %.0f ns\n", accept_ns);
  std::printf("getsockopt TCP_INFO on a listener (its queue's length): %.0f ns\n", info_ns);
  std::printf("epoll_wait, one socket ready: %.0f ns\n", epoll_ns);
  std::printf("epoll_ctl ADD and DEL of a connected socket: %.0f ns\n", watch_ns);
  std::printf("epoll_ctl MOD of a connected socket: %.0f ns\n", rewatch_ns);
  std::printf("timer per connection, timerfd (create, epoll_ctl, arm, disarm, close): %.0f ns\n", timerfd_ns);
  std::printf("timer per connection, wheel (schedule, cancel): %.0f ns\n", wheel_ns);
  std::printf("loopback connection, a new socket (socket, options, connect, close): %.2f us\n", new_us);
  std::printf("loopback connection, a kept socket (connect, disconnect_if_over): %.2f us\n", kept_us);
  return 0;
}
