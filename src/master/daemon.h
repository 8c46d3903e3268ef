// Going to the background without losing start-up errors: the launching process waits on a
// pipe until the daemon reports "serving" or a failure, and exits with the daemon's status.
#pragma once

#include <optional>
#include <string>

#include "core/failure.h"
#include "net/fd.h"

namespace balance::master {

class StartupReport {
 public:
  // Forks. In the launching process: waits for the daemon's report and returns the exit code
  // to exit with. In the daemon (new session, standard streams on /dev/null): returns nullopt.
  std::optional<int> daemonize();
  // Daemon side: start-up is over, successfully (nullopt) or not. No-op in the foreground.
  void send(const std::optional<Failure>& failure);

 private:
  net::Fd pipe_;  // write end, in the daemon until the report is sent
};

}  // namespace balance::master
