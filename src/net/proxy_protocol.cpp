#include "net/proxy_protocol.h"

#include <sys/socket.h>

namespace balance::net {
namespace {

constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};

bool same_known_family(const core::Endpoint& a, const core::Endpoint& b) {
  return a.family == b.family && (a.family == AF_INET || a.family == AF_INET6);
}

void put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

}  // namespace

std::string proxy_header_local_v1() { return "PROXY UNKNOWN\r\n"; }

std::string proxy_header_local_v2() {
  std::string out(kV2Signature, sizeof kV2Signature);
  out.push_back('\x20');  // version 2, LOCAL: the receiver uses the connection's own addresses
  out.push_back('\x00');  // AF_UNSPEC
  put16(out, 0);
  return out;
}

std::string proxy_header_v1(const core::Endpoint& client_in, const core::Endpoint& local_in) {
  const core::Endpoint client = client_in.unmapped();
  const core::Endpoint local = local_in.unmapped();
  if (!same_known_family(client, local)) return proxy_header_local_v1();
  return std::string("PROXY ") + (client.family == AF_INET ? "TCP4 " : "TCP6 ") + client.address_string() + " " +
         local.address_string() + " " + std::to_string(client.port) + " " + std::to_string(local.port) + "\r\n";
}

std::string proxy_header_v2(const core::Endpoint& client_in, const core::Endpoint& local_in) {
  const core::Endpoint client = client_in.unmapped();
  const core::Endpoint local = local_in.unmapped();
  if (!same_known_family(client, local)) return proxy_header_local_v2();
  std::string out(kV2Signature, sizeof kV2Signature);
  const bool v4 = client.family == AF_INET;
  const size_t addr_len = v4 ? 4 : 16;
  out.push_back('\x21');             // version 2, PROXY
  out.push_back(v4 ? '\x11' : '\x21');  // TCP over IPv4 / IPv6
  put16(out, static_cast<uint16_t>(2 * addr_len + 4));
  out.append(reinterpret_cast<const char*>(client.addr.data()), addr_len);
  out.append(reinterpret_cast<const char*>(local.addr.data()), addr_len);
  put16(out, client.port);
  put16(out, local.port);
  return out;
}

}  // namespace balance::net
