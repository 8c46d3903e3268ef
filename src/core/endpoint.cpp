#include "core/endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace balance::core {

socklen_t Endpoint::to_sockaddr(sockaddr_storage& out) const {
  std::memset(&out, 0, sizeof out);
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, addr.data(), 4);
    return sizeof(sockaddr_in);
  }
  if (family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_scope_id = scope_id;
    std::memcpy(&sin6->sin6_addr, addr.data(), 16);
    return sizeof(sockaddr_in6);
  }
  return 0;
}

std::optional<Endpoint> Endpoint::from_numeric(const std::string& address, uint16_t port) {
  Endpoint e;
  e.port = port;
  if (inet_pton(AF_INET, address.c_str(), e.addr.data()) == 1) {
    e.family = AF_INET;
  } else if (inet_pton(AF_INET6, address.c_str(), e.addr.data()) == 1) {
    e.family = AF_INET6;
  } else {
    return std::nullopt;
  }
  return e;
}

std::optional<Endpoint> Endpoint::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Endpoint e;
  // sa_family itself is only there when len covers it.
  if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return std::nullopt;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in sin;
    std::memcpy(&sin, sa, sizeof sin);
    e.family = AF_INET;
    e.port = ntohs(sin.sin_port);
    std::memcpy(e.addr.data(), &sin.sin_addr, 4);
    return e;
  }
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, sa, sizeof sin6);
    e.family = AF_INET6;
    e.port = ntohs(sin6.sin6_port);
    e.scope_id = sin6.sin6_scope_id;
    std::memcpy(e.addr.data(), &sin6.sin6_addr, 16);
    return e;
  }
  return std::nullopt;
}

std::string Endpoint::address_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET) {
    inet_ntop(AF_INET, addr.data(), buf, sizeof buf);
  } else if (family == AF_INET6) {
    inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
  } else {
    return "-";
  }
  return buf;
}

std::string Endpoint::host_string() const {
  if (family == AF_INET6 && scope_id != 0) return address_string() + "%" + std::to_string(scope_id);
  return address_string();
}

std::string Endpoint::to_string() const {
  if (family == AF_INET6) return "[" + host_string() + "]:" + std::to_string(port);
  return address_string() + ":" + std::to_string(port);
}

bool Endpoint::lacks_scope() const {
  return family == AF_INET6 && scope_id == 0 && addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80;
}

bool Endpoint::is_loopback() const {
  static constexpr uint8_t kIpv6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const Endpoint e = unmapped();
  if (e.family == AF_INET) return e.addr[0] == 127;
  return e.family == AF_INET6 && std::memcmp(e.addr.data(), kIpv6Loopback, 16) == 0;
}

Endpoint Endpoint::unmapped() const {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family != AF_INET6 || std::memcmp(addr.data(), kMappedPrefix, 12) != 0) return *this;
  Endpoint v4;
  v4.family = AF_INET;
  v4.port = port;
  std::memcpy(v4.addr.data(), addr.data() + 12, 4);
  return v4;
}

}  // namespace balance::core
