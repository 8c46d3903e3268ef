#include "net/acceptor.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "log/log.h"
#include "net/session.h"
#include "net/sockets.h"
#include "net/worker.h"

namespace balance::net {
namespace {

constexpr unsigned kAcceptBatch = 64;  // accepts per wake-up, so one busy listener cannot starve relays
constexpr uint64_t kPauseMs = 100;     // listening pause when descriptors are exhausted

Fd open_spare() { return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

// The client's address as accept4() gave it; a v4 client of the dual-stack listener arrives
// v4-mapped, and is the v4 address it is.
core::Endpoint client_address(const sockaddr_storage& ss, socklen_t len) {
  const auto peer = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  return peer.value_or(core::Endpoint{}).unmapped();
}

// Whether loopback clients of this listener need the loopback congestion control set one by one:
// a listener bound to a loopback address has it already (its clients inherit it).
bool cc_per_client(int listen_fd, const std::string& loopback_cc) {
  if (loopback_cc.empty()) return false;
  const auto local = local_endpoint(listen_fd);
  return !local || !local->unmapped().is_loopback();
}

}  // namespace

Acceptor::Acceptor(Worker& worker, int listen_fd)
    : worker_(worker),
      listen_fd_(listen_fd),
      cc_per_client_(cc_per_client(listen_fd, worker.shared().config.loopback_cc)),
      spare_(open_spare()) {
  resume();
}

Acceptor::~Acceptor() {
  worker_.loop().timers().cancel(pause_timer_);
  if (listening_) worker_.loop().remove(listen_fd_);
}

// Accepts the clients that wait, as many as the queue's length says (at most a batch), so that
// no accept4() is made only to learn from EAGAIN that the queue is empty: that call costs about
// ten others here. The listener is level-triggered, so whatever is still queued is reported again.
void Acceptor::on_events(uint32_t) {
  const unsigned waiting = std::min(queued_clients(listen_fd_).value_or(kAcceptBatch), kAcceptBatch);
  for (unsigned i = 0; i < waiting && listening_; ++i) {
    if (!accept_one()) break;
  }
}

// Accepts one client; false when there is nothing more to accept now.
bool Acceptor::accept_one() {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  Fd fd(::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!fd) {
    switch (errno) {
      case EAGAIN:
        return false;
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
        return true;  // that client is gone or refused by a firewall rule: next one
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        if (worker_.sockets().clear()) return true;  // the kept sockets' descriptors serve clients first
        shed_one();
        return false;
      default:
        log::write(log::Level::Error, "accept: %s", std::strerror(errno));
        pause();
        return false;
    }
  }
  auto& header = worker_.shared().table.header;
  header.accepted_total.fetch_add(1, std::memory_order_relaxed);
  const core::Endpoint client = client_address(ss, len);
  if (cc_per_client_) use_loopback_cc(fd.get(), client, worker_.shared().config.loopback_cc);
  auto session = std::make_unique<Session>(worker_, std::move(fd), client);
  Session& s = *session;
  worker_.adopt(std::move(session));
  s.start();
  return true;
}

// Out of descriptors: close the waiting client at once with the spare descriptor's slot.
void Acceptor::shed_one() {
  auto& header = worker_.shared().table.header;
  if (spare_) {
    spare_.reset();
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    Fd victim(::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC));
    if (victim) {  // accepted, and closed without a channel: a refused client among the accepted
      header.accepted_total.fetch_add(1, std::memory_order_relaxed);
      header.refused_total.fetch_add(1, std::memory_order_relaxed);
      if (worker_.shared().config.log_conns) log_unserved(client_address(ss, len), 0, EndReason::Shed);
    }
    victim.reset();
    spare_ = open_spare();
  }
  log::write(log::Level::Warning, "out of file descriptors: shedding new connections");
  if (!spare_) pause();  // not even the spare: wait for descriptors to free up
}

void Acceptor::pause() {
  if (!listening_) return;
  worker_.loop().remove(listen_fd_);
  listening_ = false;
  const uint64_t when = worker_.loop().now_ms() + kPauseMs;
  worker_.loop().timers().schedule(pause_timer_, when, [this] {
    if (!spare_) spare_ = open_spare();
    resume();
  });
}

void Acceptor::resume() {
  if (listening_) return;
  listening_ = true;
  if (!worker_.loop().add(listen_fd_, EPOLLIN | EPOLLEXCLUSIVE, *this)) {
    log::write(log::Level::Error, "cannot watch the listening socket: %s; retrying", std::strerror(errno));
    pause();  // arms the retry
  }
}

}  // namespace balance::net
