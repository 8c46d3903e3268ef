#include "ctl/kill.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <optional>
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

// Stops one master: SIGTERM, then harder if it does not go in time. nullopt once it is gone
// (a successor gone before it was signalled included; the first master counts as no master then).
std::optional<KillOutcome> stop_master(Segment& segment, const Segment::MasterIdentity& id, bool first,
                                       const KillTimeouts& timeouts) {
  const Process process(id.pid, id.start_ticks);
  if (!process.verified()) {
    if (first) return KillOutcome{kExitUnavailable, no_master_failure().message};
    return std::nullopt;
  }
  // A master that drains already would take a second SIGTERM as "stop now", cutting the
  // connections it lets finish: it is only waited for.
  const bool stopping = (segment.table().header.flags.load() & core::kFlagStopping) != 0;
  const int err = stopping ? 0 : process.send(SIGTERM);
  if (err == EPERM) {
    const Failure denied = permission_failure(segment.id());
    return KillOutcome{denied.exit_code, denied.message};
  }
  if (err != 0 && err != ESRCH) {
    return KillOutcome{kExitOsErr, "cannot signal master process " + std::to_string(id.pid)};
  }
  if (err == 0 && !process.wait_gone(timeouts.term_ms) && !stop_harder(process, timeouts)) {
    return KillOutcome{kExitSoftware, "master process " + std::to_string(id.pid) + " does not stop, exiting."};
  }
  return std::nullopt;
}

// How many masters one kill stops at most: each upgrade (SIGUSR2) under way hands the instance
// to one more.
constexpr int kMaxMasters = 8;

}  // namespace

KillOutcome kill_master(Segment& segment, const KillTimeouts& timeouts) {
  Segment::MasterIdentity master = segment.live_master_identity(true);
  if (master.pid == 0) {
    if (segment.live_master(false) == 0) return {kExitUnavailable, no_master_failure().message};
    return refused(segment, segment.table().header.master_pid.load());
  }
  // An upgrade under way when the SIGTERM came hands the instance over to a new master: the
  // old one drains and goes, the new one serves on from the same table. Each master the table
  // names is stopped in turn, until none serves from it.
  for (int stopped = 0; master.pid != 0; ++stopped) {
    if (master.pid == ::getpid()) return refused(segment, master.pid);
    if (stopped == kMaxMasters) {
      return {kExitSoftware, "master process " + std::to_string(master.pid) + " does not stop, exiting."};
    }
    if (auto failed = stop_master(segment, master, stopped == 0, timeouts)) return *failed;
    master = segment.live_master_identity(true);
    if (master.pid == 0 && segment.live_master(false) != 0) {
      return refused(segment, segment.table().header.master_pid.load());
    }
  }
  segment.unlink();
  return {kExitOk, "shutdown complete, exiting."};
}

}  // namespace balance::ctl
