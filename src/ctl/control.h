// The control clients: `-c CMD` runs one command, `-i` runs the interactive shell, both against
// the running instance named by the port, -b text and -M of `config` (COMPAT.md, "Control
// commands"). Command output goes to stdout, unbuffered; messages about the instance itself go
// to stderr, one line, with these exit codes:
//   69  no master process, exiting.                       (no segment, or its master is gone)
//   77  permission denied: balance on ... belongs to another user, exiting.
//   65  invalid control segment of balance on ...: <why>, exiting.   (magic, layout, size)
//   71  a system error opening the segment;  74  stdout could not be written;
//   70  `kill`: the master survived SIGTERM, SIGTERM and SIGKILL.
// -d traces the attach (segment name, owner, mode, size, layout, master pid) on stderr.
#pragma once

#include "cli/config.h"

namespace balance::ctl {

// Attaches and runs config.command. Returns 0 after any command output (error replies such as
// "syntax error" included); the attach or kill failure code (69, 77, 65...) otherwise.
int run_command(const cli::Config& config);

// Attaches, prints the banner and the master's PID, then reads commands (readline when stdin
// is a terminal, plain lines otherwise) until quit, kill or end of input (a newline, exit 0).
// Exits 69 if the master goes away while the shell is open.
int run_shell(const cli::Config& config);

}  // namespace balance::ctl
