#include "net/socket_pool.h"

#include <sys/socket.h>

#include <utility>

namespace balance::net {

SocketKind socket_kind(const core::Endpoint& to, std::string_view loopback_cc) {
  const core::Endpoint target = to.unmapped();  // as start_connect() reaches it
  return {target.family, !loopback_cc.empty() && target.is_loopback()};
}

std::vector<Fd>& SocketPool::slot(SocketKind kind) {
  return idle_[(kind.family == AF_INET6 ? 2u : 0u) + (kind.loopback_cc ? 1u : 0u)];
}

Fd SocketPool::take(SocketKind kind) {
  std::vector<Fd>& fds = slot(kind);
  if (fds.empty()) return Fd();
  Fd fd = std::move(fds.back());
  fds.pop_back();
  return fd;
}

void SocketPool::keep(Fd fd, SocketKind kind) {
  std::vector<Fd>& fds = slot(kind);
  if (fds.size() < kMaxIdle && loop_.park(fd.get())) {
    fds.push_back(std::move(fd));
  } else {
    loop_.close(fd);
  }
}

size_t SocketPool::idle() const {
  size_t n = 0;
  for (const auto& fds : idle_) n += fds.size();
  return n;
}

bool SocketPool::clear() {
  bool any = false;
  for (auto& fds : idle_) {
    any = any || !fds.empty();
    for (Fd& fd : fds) loop_.close(fd);  // out of epoll first while a fork's child holds a copy
    fds.clear();
  }
  return any;
}

}  // namespace balance::net
