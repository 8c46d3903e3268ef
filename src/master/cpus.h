// The CPUs the workers run on: the set the process may use (sched_getaffinity: taskset, systemd's
// CPUAffinity=, a cpuset cgroup), and --cpus checked against it.
#pragma once

#include <string>
#include <vector>

#include "cli/config.h"
#include "core/failure.h"

namespace balance::master {

// The CPUs this process may run on, in increasing order (never empty: at worst CPU 0 is assumed).
std::vector<unsigned> allowed_cpus();

// "0-3,8": a CPU list as the kernel writes one (/sys/devices/system/cpu/online).
std::string cpu_list_text(const std::vector<unsigned>& cpus);

// Settles --cpus: `all` becomes the allowed CPUs; a CPU the process may not run on, or a --threads
// that disagrees with `all`, is an error. Then threads == cpus.size() whenever cpus are given.
bool settle_cpus(cli::Config& config, Failure& failure);

// The worker threads to run: --threads, else one per CPU the process may run on.
unsigned worker_threads(const cli::Config& config);

}  // namespace balance::master
