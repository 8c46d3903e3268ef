// The `kill` command: stops the master of a segment gracefully, escalating if it must, and
// removes the segment. Only ever signals a process proven to be that segment's live master.
#pragma once

#include <string>

#include "ctl/segment.h"

namespace balance::ctl {

struct KillTimeouts {
  int term_ms = 5000;      // how long the first SIGTERM (graceful: live connections may finish) gets
  int stop_now_ms = 3000;  // how long a second SIGTERM (the master's "stop now") gets
  int kill_ms = 3000;      // how long SIGKILL gets before giving up
};

struct KillOutcome {
  int exit_code = kExitOk;
  std::string message;  // one line: "shutdown complete, exiting." on success (stdout), else stderr
};

// Sends SIGTERM to the master (a live process of the segment's owner, started when the header
// says, holding the liveness lock and mapping this very segment; never the caller; none if it
// drains after a stop signal already) and waits until it is gone (a zombie counts as gone).
// Escalates if it does not go: a second SIGTERM after `term_ms` (the master then closes what
// is left at once), SIGKILL after `stop_now_ms` more. Then does the same for a master an
// upgrade handed the instance over to meanwhile, and removes the segment's name if it is still
// this segment. Failures: 69 no live master, 77 not allowed or not verifiable, 70 still running
// after SIGKILL.
KillOutcome kill_master(Segment& segment, const KillTimeouts& timeouts = {});

}  // namespace balance::ctl
