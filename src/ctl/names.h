// Where an instance's control segment lives: the run directory and the names derived from the
// listening port and the -b text. Pure apart from reading the environment and the euid.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace balance::ctl {

// "balance.<port>" or "balance.<port>.<encoded bind text>": a single path component, the same
// for the shm name and the -M file name. Injective: bytes other than [A-Za-z0-9.-] are written
// as _XX (hex); a very long bind text is cut and completed by a hash of the whole text.
std::string segment_stem(uint16_t port, std::string_view bind_text);

// How messages name an instance: "port 8080" or "127.0.0.1 port 8080".
std::string instance_label(uint16_t port, std::string_view bind_text);

// How messages name a path (from BALANCE_RUNDIR or XDG_RUNTIME_DIR, which may hold anything):
// control and non-ASCII bytes as \xNN, cut after 200 bytes, so that the message stays one line.
std::string shown_path(std::string_view path);

}  // namespace balance::ctl
