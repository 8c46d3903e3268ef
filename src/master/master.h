// The master process: binds the listener, daemonizes (unless -f), publishes the channel table
// in shared memory, runs the worker threads and stops them on SIGTERM/SIGINT.
#pragma once

#include <string>

#include "cli/config.h"
#include "core/failure.h"

namespace balance::master {

// Runs the proxy described by `config` until it is told to stop; returns the exit code.
// Without -f the launching process returns once the daemon serves (0) or failed (its code).
// argc/argv are kept to start the binary anew on an upgrade (SIGUSR2).
int serve(const cli::Config& config, int argc, const char* const* argv);

// --loopback-cc, checked before the listeners open: an algorithm named on the command line must be
// usable (else `failure` says why, exit 71, and it returns false); the default one is dropped
// where the kernel lacks or refuses it (config.loopback_cc emptied, `note` says so, for -d).
bool settle_loopback_cc(cli::Config& config, Failure& failure, std::string& note);

}  // namespace balance::master
