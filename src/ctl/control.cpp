#include "ctl/control.h"

#include <algorithm>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "core/signals.h"
#include "ctl/executor.h"
#include "ctl/input.h"
#include "ctl/kill.h"
#include "ctl/resolve.h"
#include "ctl/segment.h"
#include "version.h"

namespace balance::ctl {
namespace {

void print_error(const std::string& message) { std::fprintf(stderr, "%s\n", message.c_str()); }

// Signals that would end the process by default and mean nothing to a control client are
// ignored, as the master ignores them (balance(1), SIGNALS): `pkill -USR2 balance`, meant for a
// master's upgrade, must not kill an open shell, least of all with readline's terminal raw.
// SIGINT, SIGQUIT, SIGTERM, SIGHUP and the job control signals keep their meaning (readline
// restores the terminal before it acts on them).
void ignore_stray_signals() {
  core::for_each_stray_signal([](int sig) { ::signal(sig, SIG_IGN); });  // SIGPIPE: an error return
  ::signal(SIGUSR2, SIG_IGN);  // the master's upgrade
}

std::unique_ptr<Segment> attach_or_report(const cli::Config& config, int& exit_code) {
  ignore_stray_signals();
  Trace trace;
  if (config.debug) trace = [](const std::string& line) { std::fprintf(stderr, "balance: %s\n", line.c_str()); };
  Failure failure;
  auto segment = Segment::attach({config.port, config.bind_text, config.use_mmap}, failure, trace);
  if (!segment) {
    print_error(failure.message);
    exit_code = failure.exit_code;
  }
  return segment;
}

Executor make_executor(Segment& segment) {
  return Executor(segment.table(), resolve_channel_address, [&segment](const std::function<void()>& change) {
    const Segment::WriteLock lock(segment);
    if (!lock.held()) return false;
    change();
    return true;
  });
}

int carry_out_kill(Segment& segment) {
  // A graceful stop lets connections finish for the master's grace period: wait that long
  // (plus a margin) before insisting. The value comes from shared memory: bounded.
  KillTimeouts timeouts;
  const uint64_t grace_ms = uint64_t{std::min<uint32_t>(segment.table().header.grace_s.load(), 3600)} * 1000u;
  timeouts.term_ms = static_cast<int>(std::max<uint64_t>(timeouts.term_ms, grace_ms + 2000));
  const KillOutcome outcome = kill_master(segment, timeouts);
  if (outcome.exit_code != kExitOk) {
    print_error(outcome.message);
    return outcome.exit_code;
  }
  return write_stdout(outcome.message + "\n") ? kExitOk : kExitIoErr;
}

bool blank(const std::string& line) { return line.find_first_not_of(" \t\r\n\v\f") == std::string::npos; }

// The shell's read-execute loop; returns the exit code. `master` is the PID the banner showed:
// when an upgrade (SIGUSR2) has handed the instance to a new master since, the next command's
// answer is preceded by the new PID, in the banner's words.
int shell_loop(Segment& segment, Input& input, pid_t master) {
  Executor executor = make_executor(segment);
  Session session;
  std::string line;
  for (;;) {
    const InputStatus status = input.read("balance[" + std::to_string(session.group) + "] ", line);
    if (status == InputStatus::End) return input.ended_the_line() || write_stdout("\n") ? kExitOk : kExitIoErr;
    if (status == InputStatus::TooLong) {
      if (!write_stdout("line too long\n")) return kExitIoErr;
      continue;
    }
    if (!blank(line)) {
      const pid_t now = segment.live_master(false);
      if (now == 0) {
        print_error(no_master_failure().message);
        return kExitUnavailable;
      }
      if (now != master && !write_stdout("PID of master process is now " + std::to_string(now) + "\n")) {
        return kExitIoErr;
      }
      master = now;
    }
    const Reply reply = executor.execute(line, session);
    if (!write_stdout(reply.out)) return kExitIoErr;
    if (reply.action == Action::Quit) return kExitOk;
    if (reply.action == Action::Kill) return carry_out_kill(segment);
  }
}

}  // namespace

int run_command(const cli::Config& config) {
  int exit_code = kExitOk;
  const auto segment = attach_or_report(config, exit_code);
  if (!segment) return exit_code;
  Executor executor = make_executor(*segment);
  Session session;
  const Reply reply = executor.execute(config.command, session);
  if (!write_stdout(reply.out)) return kExitIoErr;
  if (reply.action == Action::Kill) return carry_out_kill(*segment);
  return kExitOk;
}

int run_shell(const cli::Config& config) {
  int exit_code = kExitOk;
  const auto segment = attach_or_report(config, exit_code);
  if (!segment) return exit_code;
  const pid_t master = segment->live_master(false);
  const std::string banner = std::string("balance ") + kVersion + " interactive command shell\n" +
                             "PID of master process is " + std::to_string(master) + "\n";
  if (!write_stdout(banner)) return kExitIoErr;
  const auto input = ::isatty(STDIN_FILENO) ? terminal_input() : stream_input(STDIN_FILENO);
  return shell_loop(*segment, *input, master);
}

}  // namespace balance::ctl
