// The PROXY protocol header (HAProxy's specification, versions 1 and 2) that tells a backend
// the real client address and port: sent on the backend connection before any client data.
#pragma once

#include <string>

#include "core/endpoint.h"

namespace balance::net {

// The header for a connection from `client` to `local` (the address the client reached).
// IPv4-mapped IPv6 addresses are sent as IPv4. When the two families differ the header says
// the addresses are unknown (v1 "PROXY UNKNOWN", v2 the LOCAL command).
std::string proxy_header_v1(const core::Endpoint& client, const core::Endpoint& local);
std::string proxy_header_v2(const core::Endpoint& client, const core::Endpoint& local);

// The header of a connection balance makes on its own behalf (a health check), relaying no
// client: v1 "PROXY UNKNOWN", v2 the LOCAL command, as the specification asks for checks.
std::string proxy_header_local_v1();
std::string proxy_header_local_v2();

}  // namespace balance::net
