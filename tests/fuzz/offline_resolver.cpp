// Name resolution without the network for the fuzz targets: the link wraps getaddrinfo
// (-Wl,--wrap=getaddrinfo) so that every lookup made by balance's code is numeric-only, except
// "localhost", which maps to the loopback address of the family asked for. A fuzzed host name
// thus never waits on DNS, and the targets stay fast and deterministic.
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

extern "C" int __real_getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res);

extern "C" int __wrap_getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  addrinfo h{};
  if (hints != nullptr) h = *hints;
  if (node != nullptr && std::strcmp(node, "localhost") == 0) {
    node = h.ai_family == AF_INET6 ? "::1" : "127.0.0.1";
  }
  h.ai_flags |= AI_NUMERICHOST;
  return __real_getaddrinfo(node, service, &h, res);
}
