// Name resolution for `create` and `assign`: HOST (name or literal; an IPv6 literal bare or in
// brackets, as on the command line) and PORT (number or /etc/services name). A name with an IPv4 address shows it, as the classic tool did.
#pragma once

#include <string_view>

#include "ctl/executor.h"

namespace balance::ctl {

// The real Resolver: a literal needs no lookup; a name prefers its IPv4 address.
Resolved resolve_channel_address(std::string_view host, std::string_view port);

}  // namespace balance::ctl
