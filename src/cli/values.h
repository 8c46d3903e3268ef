// The values on balance's command line: numbers, ports (number or /etc/services name) and host
// addresses (name or literal). Reentrant: getservbyname_r and getaddrinfo, no static buffers.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/endpoint.h"

namespace balance::cli {

inline constexpr size_t kMaxHostLength = 255;     // longer host text is rejected unresolved
inline constexpr size_t kMaxServiceLength = 64;   // longer port text is never a service name

// A plain decimal number (digits only: no sign, no space, not empty) not above `max`.
std::optional<uint64_t> parse_number(std::string_view text, uint64_t max);

// A list of CPU numbers as the kernel writes them ("0-3,8,10"; each below `limit`), in the order
// written, ranges expanded. nullopt when empty, malformed, a range runs backwards, or a CPU is
// named twice.
std::optional<std::vector<unsigned>> parse_cpu_list(std::string_view text, unsigned limit);

// A TCP port: a number 1..65535 or a tcp service name from /etc/services.
std::optional<uint16_t> parse_port(std::string_view text);

// Resolves a host name or address literal with getaddrinfo (SOCK_STREAM, the given family and
// flags) and returns the first result with `port` set. nullopt when empty, longer than
// kMaxHostLength, or not resolvable.
std::optional<core::Endpoint> resolve_host(std::string_view host, uint16_t port, int family, int flags);

// A channel's host, the same on the command line and in `create`/`assign`: a literal as written
// (IPv4, IPv6, ::ffff:a.b.c.d, fe80::1%eth0); a name by its IPv4 address when it has one, as the
// classic tool did (it knew no other), else by its IPv6 address. So `localhost` stays 127.0.0.1
// where /etc/hosts also gives it ::1 (which getaddrinfo would sort first).
std::optional<core::Endpoint> resolve_channel_host(std::string_view host, uint16_t port);

}  // namespace balance::cli
