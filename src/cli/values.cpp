#include "cli/values.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

namespace balance::cli {

std::optional<uint64_t> parse_number(std::string_view text, uint64_t max) {
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  for (const char ch : text) {
    if (ch < '0' || ch > '9') return std::nullopt;
    const auto digit = static_cast<uint64_t>(ch - '0');
    if (digit > max || value > (max - digit) / 10) return std::nullopt;  // would pass max
    value = value * 10 + digit;
  }
  return value;
}

std::optional<std::vector<unsigned>> parse_cpu_list(std::string_view text, unsigned limit) {
  std::vector<unsigned> cpus;
  std::vector<bool> seen(limit);
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const size_t dash = item.find('-');
    const auto first = parse_number(item.substr(0, dash), limit - 1);
    const auto last = dash == std::string_view::npos ? first : parse_number(item.substr(dash + 1), limit - 1);
    if (!first || !last || *last < *first) return std::nullopt;
    for (uint64_t cpu = *first; cpu <= *last; ++cpu) {
      if (seen[cpu]) return std::nullopt;
      seen[cpu] = true;
      cpus.push_back(static_cast<unsigned>(cpu));
    }
    if (comma == std::string_view::npos) return cpus;
    text.remove_prefix(comma + 1);
  }
}

namespace {

std::optional<uint16_t> lookup_service(std::string_view name) {
  if (name.empty() || name.size() > kMaxServiceLength) return std::nullopt;
  const std::string cname(name);
  servent entry{};
  servent* found = nullptr;
  std::vector<char> buf(1024);
  for (;;) {
    const int rc = getservbyname_r(cname.c_str(), "tcp", &entry, buf.data(), buf.size(), &found);
    if (rc != ERANGE || buf.size() >= (1u << 20)) {
      if (rc != 0 || found == nullptr) return std::nullopt;
      break;
    }
    buf.resize(buf.size() * 2);
  }
  const uint16_t port = ntohs(static_cast<uint16_t>(found->s_port));
  if (port == 0) return std::nullopt;
  return port;
}

}  // namespace

std::optional<uint16_t> parse_port(std::string_view text) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos) {
    const auto n = parse_number(text, 65535);
    if (!n || *n == 0) return std::nullopt;
    return static_cast<uint16_t>(*n);
  }
  return lookup_service(text);
}

namespace {

// Every address getaddrinfo gives `host` (SOCK_STREAM, `family`, `flags`), in its order.
std::vector<core::Endpoint> lookup_host(std::string_view host, int family, int flags) {
  std::vector<core::Endpoint> all;
  if (host.empty() || host.size() > kMaxHostLength) return all;
  const std::string chost(host);
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags;
  addrinfo* res = nullptr;
  if (getaddrinfo(chost.c_str(), nullptr, &hints, &res) != 0) return all;
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (auto e = core::Endpoint::from_sockaddr(ai->ai_addr, ai->ai_addrlen)) all.push_back(*e);
  }
  freeaddrinfo(res);
  return all;
}

}  // namespace

std::optional<core::Endpoint> resolve_host(std::string_view host, uint16_t port, int family, int flags) {
  const std::vector<core::Endpoint> all = lookup_host(host, family, flags);
  if (all.empty()) return std::nullopt;
  core::Endpoint e = all.front();
  e.port = port;
  return e;
}

std::optional<core::Endpoint> resolve_channel_host(std::string_view host, uint16_t port) {
  // One lookup of all of them: asked for AF_INET alone, glibc makes 127.0.0.1 of a name whose
  // only address is ::1.
  const std::vector<core::Endpoint> all = lookup_host(host, AF_UNSPEC, 0);
  if (all.empty()) return std::nullopt;
  const auto v4 = std::find_if(all.begin(), all.end(), [](const core::Endpoint& e) { return e.family == AF_INET; });
  core::Endpoint e = v4 != all.end() ? *v4 : all.front();
  e.port = port;
  return e;
}

}  // namespace balance::cli
