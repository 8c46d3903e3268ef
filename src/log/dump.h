// The -p packet dump (COMPAT.md, "Data transfer"): "-> N" for a block read from the client,
// "-< N" from the server, then the data in an always-readable form.
#pragma once

#include <cstddef>
#include <string>

namespace balance::log {

enum class Direction { FromClient, FromServer };

// Formats one block exactly as the classic tool printed it (pure).
std::string format_dump(Direction dir, const unsigned char* data, size_t len);

// Writes format_dump() to stdout in one piece (log::write_stdout()), serialized across threads.
void dump(Direction dir, const unsigned char* data, size_t len);

}  // namespace balance::log
