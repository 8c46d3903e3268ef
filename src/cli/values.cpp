#include "cli/values.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

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

std::optional<core::Endpoint> resolve_host(std::string_view host, uint16_t port, int family, int flags) {
  if (host.empty() || host.size() > kMaxHostLength) return std::nullopt;
  const std::string chost(host);
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags;
  addrinfo* res = nullptr;
  if (getaddrinfo(chost.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return std::nullopt;
  std::optional<core::Endpoint> ep;
  for (const addrinfo* ai = res; ai != nullptr && !ep; ai = ai->ai_next) {
    ep = core::Endpoint::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
  }
  freeaddrinfo(res);
  if (ep) ep->port = port;
  return ep;
}

}  // namespace balance::cli
