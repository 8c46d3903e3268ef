// A start-up or configuration failure: what to print (one line) and the sysexits code to exit with.
#pragma once

#include <string>

namespace balance {

// sysexits.h codes used by balance.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;        // EX_USAGE
inline constexpr int kExitDataErr = 65;      // EX_DATAERR (unknown or invalid address)
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE
inline constexpr int kExitSoftware = 70;     // EX_SOFTWARE
inline constexpr int kExitOsErr = 71;        // EX_OSERR
inline constexpr int kExitCantCreat = 73;    // EX_CANTCREAT
inline constexpr int kExitIoErr = 74;        // EX_IOERR
inline constexpr int kExitNoPerm = 77;       // EX_NOPERM

struct Failure {
  int exit_code = kExitSoftware;
  std::string message;  // one line, no trailing newline
};

}  // namespace balance
