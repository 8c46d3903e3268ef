#include "ctl/resolve.h"

#include <netdb.h>
#include <sys/socket.h>

#include "cli/values.h"

namespace balance::ctl {

Resolved resolve_channel_address(std::string_view host, std::string_view port) {
  std::optional<core::Endpoint> e;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {  // as on the command line
    e = cli::resolve_host(host.substr(1, host.size() - 2), 0, AF_INET6, AI_NUMERICHOST);
  } else {
    e = cli::resolve_channel_host(host, 0);
  }
  if (!e || e->lacks_scope()) return {ResolveStatus::BadHost, {}};
  const std::optional<uint16_t> number = cli::parse_port(port);
  if (!number) return {ResolveStatus::BadPort, {}};
  e->port = *number;
  return {ResolveStatus::Ok, *e};
}

}  // namespace balance::ctl
