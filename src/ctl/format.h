// The text of the read-only control commands, exactly as balance 3.57 printed it: show, help,
// version and the MRTG lines. Pure functions of the table (every value read is clamped).
#pragma once

#include <cstdint>
#include <string>

#include "core/table.h"

namespace balance::ctl {

// The `show` table: the header line and one row per channel of every group that has channels.
// The address column is 16 wide, or as wide as the longest address (header included). A
// weight column follows when some channel's weight is not 1, a health column (up/down) when
// health checks are on; without them the output is exactly the classic one.
std::string format_show(const core::Table& table);

// The `help` text: one line per command: the classic 16 in the classic order, then lc, weight.
std::string format_help();

// The `version` text: version, MAXGROUPS and MAXCHANNELS.
std::string format_version();

// `mrtg-bytes G C`: rcvd, sent, UNKNOWN, "group G channel C". Caller checks G and C exist.
std::string format_mrtg_bytes(const core::Table& table, uint32_t group, uint32_t channel);
// `mrtg-conns G C`: totalc, UNKNOWN, UNKNOWN, "group G channel C".
std::string format_mrtg_conns(const core::Table& table, uint32_t group, uint32_t channel);

}  // namespace balance::ctl
