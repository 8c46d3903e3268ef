// An IPv4 or IPv6 address and port as a plain value: what a channel points at, what a client
// connects from. Conversions to and from sockaddr are pure (no syscalls).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace balance::core {

struct Endpoint {
  uint16_t family = 0;  // AF_INET, AF_INET6, or 0 for "none"
  uint16_t port = 0;    // host byte order
  uint32_t scope_id = 0;
  std::array<uint8_t, 16> addr{};  // IPv4 uses the first 4 bytes

  bool valid() const { return family != 0; }
  bool operator==(const Endpoint&) const = default;

  // Fills `out` and returns its length, or 0 if this endpoint is not valid.
  socklen_t to_sockaddr(sockaddr_storage& out) const;
  // A numeric IPv4 or IPv6 address ("127.0.0.1", "::1") and a port; nullopt for anything else
  // (no name resolution).
  static std::optional<Endpoint> from_numeric(const std::string& address, uint16_t port);
  // Reads an AF_INET or AF_INET6 sockaddr; anything else gives nullopt.
  static std::optional<Endpoint> from_sockaddr(const sockaddr* sa, socklen_t len);
  // The numeric address only ("127.0.0.1", "2001:db8::1"), as a PROXY protocol header has it.
  std::string address_string() const;
  // The address as getaddrinfo() reads it back, with a link-local address's scope: "fe80::1%2".
  std::string host_string() const;
  // Host and port for messages: "127.0.0.1:80", "[::1]:80", "[fe80::1%2]:80".
  std::string to_string() const;
  // A link-local IPv6 address (fe80::/10) without a scope: no socket can connect to or bind it
  // (EINVAL), it needs its interface (fe80::1%eth0).
  bool lacks_scope() const;
  // For an IPv4-mapped IPv6 address (::ffff:a.b.c.d), the plain IPv4 endpoint; otherwise itself.
  Endpoint unmapped() const;
  // An address of this host's loopback interface: 127.0.0.0/8 (also v4-mapped) or ::1.
  bool is_loopback() const;
};

}  // namespace balance::core
