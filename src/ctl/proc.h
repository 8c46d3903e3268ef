// What /proc says about a process: enough to tell a live balance master from a dead one, a
// reused PID, or a process that has nothing to do with a given segment. Linux only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace balance::ctl {

struct ProcessInfo {
  char state = '?';          // /proc/<pid>/stat field 3 ('R', 'S', 'Z', ...)
  uint64_t start_ticks = 0;  // field 22: start time in clock ticks since boot
  uid_t uid = 0;             // real uid (/proc/<pid>/status)
  uid_t euid = 0;            // effective uid

  // A zombie or a dying process has released its files: as good as gone.
  bool running() const { return state != 'Z' && state != 'X' && state != 'x'; }
};

// Reads /proc/<pid>; nullopt when there is no such process (or pid <= 0).
std::optional<ProcessInfo> read_process(pid_t pid);

// The start ticks of the calling process.
uint64_t own_start_ticks();

// True when `pid` still runs and is the same process that started at `start_ticks`.
bool same_process_running(pid_t pid, uint64_t start_ticks);

// True when `pid` has the file (dev, ino) mapped, per /proc/<pid>/maps; false if unreadable.
bool maps_file(pid_t pid, dev_t dev, ino_t ino);

}  // namespace balance::ctl
