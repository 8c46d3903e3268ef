// The master process: binds the listener, daemonizes (unless -f), publishes the channel table
// in shared memory, runs the worker threads and stops them on SIGTERM/SIGINT.
#pragma once

#include "cli/config.h"

namespace balance::master {

// Runs the proxy described by `config` until it is told to stop; returns the exit code.
// Without -f the launching process returns once the daemon serves (0) or failed (its code).
// argc/argv are kept to start the binary anew on an upgrade (SIGUSR2).
int serve(const cli::Config& config, int argc, const char* const* argv);

}  // namespace balance::master
