// balance: a TCP load balancer, drop-in compatible with balance 3.57.
#include <cstdio>

#include "cli/options.h"
#include "ctl/control.h"
#include "master/master.h"

int main(int argc, char** argv) {
  using namespace balance;
  const cli::ParseOutcome outcome = cli::parse(argc, argv);
  if (!outcome.out.empty()) std::fputs(outcome.out.c_str(), stdout);
  if (!outcome.err.empty()) std::fputs(outcome.err.c_str(), stderr);
  if (!outcome.config) return outcome.exit_code;

  const cli::Config& config = *outcome.config;
  switch (config.mode) {
    case cli::Mode::Interactive:
      return ctl::run_shell(config);
    case cli::Mode::Command:
      return ctl::run_command(config);
    case cli::Mode::Serve:
      break;
  }
  return master::serve(config, argc, argv);
}
