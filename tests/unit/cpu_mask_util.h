// The CPUs this test process may run on, read independently of balance's own code.
#pragma once

#include <sched.h>

#include <vector>

#include <gtest/gtest.h>

namespace balance::test {

inline std::vector<unsigned> own_cpu_mask() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  std::vector<unsigned> cpus;
  for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// The lowest CPU number this process may not run on.
inline unsigned cpu_outside_own_mask() {
  const std::vector<unsigned> mask = own_cpu_mask();
  unsigned cpu = 0;
  for (const unsigned allowed : mask) {
    if (allowed != cpu) break;
    ++cpu;
  }
  return cpu;
}

}  // namespace balance::test
