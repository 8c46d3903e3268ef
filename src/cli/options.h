// argv -> Config (COMPAT.md, "Command line"). Pure apart from name resolution
// (getaddrinfo, getservbyname).
#pragma once

#include <optional>
#include <string>

#include "cli/config.h"

namespace balance::cli {

struct ParseOutcome {
  std::optional<Config> config;  // set when the program should go on and run
  int exit_code = 0;             // otherwise exit with this code...
  std::string out;               // ...after printing this on stdout (--help, --version)
  std::string err;               // ...and this on stderr (usage text, one-line error)
};

ParseOutcome parse(int argc, const char* const* argv);

// The usage text printed for -h/--help (stdout, exit 0) and usage errors (stderr, exit 64).
std::string usage_text();

}  // namespace balance::cli
