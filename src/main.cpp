// balance: a TCP load balancer, drop-in compatible with balance 3.57.
#include <fcntl.h>

#include <cerrno>
#include <cstdio>

#include "cli/options.h"
#include "core/failure.h"
#include "ctl/control.h"
#include "ctl/segment.h"
#include "log/log.h"
#include "master/master.h"

namespace {

// A standard descriptor the caller closed (`balance -c show 8080 >&-`) would be the next one
// opened, the control segment's, and output meant for stdout would be written into the
// segment. Each closed one gets /dev/null; false if that cannot be opened.
bool hold_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    if (::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd) return false;  // the lowest free: fd
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace balance;
  if (!hold_standard_descriptors()) {
    std::fputs("cannot open /dev/null for a closed standard descriptor, exiting.\n", stderr);
    return kExitOsErr;
  }
  const cli::ParseOutcome outcome = cli::parse(argc, argv);
  if (!outcome.out.empty()) std::fputs(outcome.out.c_str(), stdout);
  if (!outcome.err.empty()) std::fputs(outcome.err.c_str(), stderr);
  if (!outcome.config) return outcome.exit_code;

  const cli::Config& config = *outcome.config;
  ctl::settle_run_directory();
  switch (config.mode) {
    case cli::Mode::Interactive:
      return ctl::run_shell(config);
    case cli::Mode::Command:
      return ctl::run_command(config);
    case cli::Mode::Serve:
      break;
  }
  const int code = master::serve(config, argc, argv);
  log::shutdown();  // what is still queued is written before the process ends
  return code;
}
