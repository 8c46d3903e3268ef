#include "master/cpus.h"

#include <sched.h>

#include <algorithm>

namespace balance::master {

std::vector<unsigned> allowed_cpus() {
  std::vector<unsigned> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  return cpus;
}

std::string cpu_list_text(const std::vector<unsigned>& cpus) {
  std::string text;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!text.empty()) text += ',';
    text += std::to_string(cpus[i]);
    if (j > i) text += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return text;
}

bool settle_cpus(cli::Config& config, Failure& failure) {
  const std::vector<unsigned> allowed = allowed_cpus();
  if (config.cpus_all) {
    if (config.threads != 0 && config.threads != allowed.size()) {
      failure = {kExitUsage, "--threads " + std::to_string(config.threads) + " and --cpus all (" +
                                 std::to_string(allowed.size()) + " CPUs: " + cpu_list_text(allowed) +
                                 ") disagree (one worker per CPU), exiting."};
      return false;
    }
    config.cpus = allowed;
  }
  for (const unsigned cpu : config.cpus) {
    if (!std::binary_search(allowed.begin(), allowed.end(), cpu)) {
      failure = {kExitUsage, "cannot pin a worker to CPU " + std::to_string(cpu) + " (--cpus): balance may run on " +
                                 cpu_list_text(allowed) + " only, exiting."};
      return false;
    }
  }
  if (!config.cpus.empty()) config.threads = static_cast<unsigned>(config.cpus.size());
  return true;
}

unsigned worker_threads(const cli::Config& config) {
  return config.threads ? config.threads : static_cast<unsigned>(allowed_cpus().size());
}

}  // namespace balance::master
