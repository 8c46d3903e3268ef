#include "ctl/kill.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "ctl/names.h"
#include "ctl/proc.h"
#include "net/fd.h"

namespace balance::ctl {
namespace {

// One process, signalled through a pidfd where the kernel has them, so a PID reused after the
// master died is never hit; without pidfds the PID is re-verified right before each signal.
class Process {
 public:
  Process(pid_t pid, uint64_t ticks) : pid_(pid), ticks_(ticks) {
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  }

  // Still the process that was verified (checked after the pidfd is open, so both agree).
  bool verified() const { return same_process_running(pid_, ticks_); }

  // 0, or an errno (ESRCH: already gone).
  int send(int sig) const {
    if (pidfd_) return ::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) == 0 ? 0 : errno;
    if (!verified()) return ESRCH;
    return ::kill(pid_, sig) == 0 ? 0 : errno;
  }

  // Waits up to `timeout_ms` for the process to end (a zombie has ended).
  bool wait_gone(int timeout_ms) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto step = std::chrono::milliseconds(1);
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (pidfd_) {
        pollfd p{pidfd_.get(), POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
        if (n > 0) return true;
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return false;
      }
      if (!verified()) return true;  // no pidfd (or poll failed): look at /proc
      if (left.count() <= 0) return false;
      std::this_thread::sleep_for(std::min(step, left));
      if (step < std::chrono::milliseconds(20)) step *= 2;
    }
  }

 private:
  pid_t pid_;
  uint64_t ticks_;
  net::Fd pidfd_;
};

std::string label(const Segment& segment) { return instance_label(segment.id().port, segment.id().bind_text); }

KillOutcome refused(const Segment& segment, pid_t pid) {
  return {kExitNoPerm, "refusing to signal process " + std::to_string(pid) + ": it is not the master of balance on " +
                           label(segment) + ", exiting."};
}

// After a first SIGTERM that did not do: a second one (the master's "stop now"), then SIGKILL.
bool stop_harder(const Process& process, const KillTimeouts& timeouts) {
  const std::pair<int, int> steps[] = {{SIGTERM, timeouts.stop_now_ms}, {SIGKILL, timeouts.kill_ms}};
  for (const auto& [sig, wait_ms] : steps) {
    const int err = process.send(sig);
    if (err == ESRCH) return true;
    if (err == 0 && process.wait_gone(wait_ms)) return true;
  }
  return false;
}

}  // namespace

KillOutcome kill_master(Segment& segment, const KillTimeouts& timeouts) {
  const pid_t pid = segment.live_master(true);
  if (pid == 0) {
    if (segment.live_master(false) == 0) return {kExitUnavailable, no_master_failure().message};
    return refused(segment, segment.table().header.master_pid.load());
  }
  if (pid == ::getpid()) return refused(segment, pid);
  const Process process(pid, segment.table().header.master_start_ticks);
  if (!process.verified()) return {kExitUnavailable, no_master_failure().message};
  const int err = process.send(SIGTERM);
  if (err == EPERM) {
    const Failure denied = permission_failure(segment.id());
    return {denied.exit_code, denied.message};
  }
  if (err != 0 && err != ESRCH) return {kExitOsErr, "cannot signal master process " + std::to_string(pid)};
  if (err == 0 && !process.wait_gone(timeouts.term_ms) && !stop_harder(process, timeouts)) {
    return {kExitSoftware, "master process " + std::to_string(pid) + " does not stop, exiting."};
  }
  segment.unlink();
  return {kExitOk, "shutdown complete, exiting."};
}

}  // namespace balance::ctl
