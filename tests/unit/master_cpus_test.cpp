// The CPUs the workers run on: cpu_list_text(), and settle_cpus() against this process's own
// affinity mask (whatever the machine running the test has).

#include <sched.h>

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "master/cpus.h"

namespace balance::master {
namespace {

std::vector<unsigned> own_mask() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  std::vector<unsigned> cpus;
  for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

unsigned not_in_mask() {
  const std::vector<unsigned> mask = own_mask();
  unsigned cpu = 0;
  while (std::find(mask.begin(), mask.end(), cpu) != mask.end()) ++cpu;
  return cpu;
}

TEST(CpuListText, RunsOfConsecutiveCpusAsRanges) {
  EXPECT_EQ(cpu_list_text({}), "");
  EXPECT_EQ(cpu_list_text({0}), "0");
  EXPECT_EQ(cpu_list_text({0, 1}), "0-1");
  EXPECT_EQ(cpu_list_text({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(cpu_list_text({5, 3, 4}), "5,3-4");  // the order given, as --cpus maps workers
}

TEST(AllowedCpus, TheProcesssAffinityMask) {
  EXPECT_EQ(allowed_cpus(), own_mask());
}

TEST(WorkerThreads, ThreadsElseOnePerAllowedCpu) {
  cli::Config config;
  EXPECT_EQ(worker_threads(config), own_mask().size());
  config.threads = 7;
  EXPECT_EQ(worker_threads(config), 7u);
}

TEST(SettleCpus, AllBecomesTheMaskAndSetsTheThreadCount) {
  cli::Config config;
  config.cpus_all = true;
  Failure failure;
  ASSERT_TRUE(settle_cpus(config, failure)) << failure.message;
  EXPECT_EQ(config.cpus, own_mask());
  EXPECT_EQ(config.threads, own_mask().size());
}

TEST(SettleCpus, AllWithAnotherThreadCountIsAUsageError) {
  cli::Config config;
  config.cpus_all = true;
  config.threads = static_cast<unsigned>(own_mask().size()) + 1;
  Failure failure;
  EXPECT_FALSE(settle_cpus(config, failure));
  EXPECT_EQ(failure.exit_code, kExitUsage);
  EXPECT_EQ(failure.message, "--threads " + std::to_string(config.threads) + " and --cpus all (" +
                                 std::to_string(own_mask().size()) + " CPUs: " + cpu_list_text(own_mask()) +
                                 ") disagree (one worker per CPU), exiting.");
}

TEST(SettleCpus, ACpuOutsideTheMaskIsAUsageError) {
  cli::Config config;
  const unsigned missing = not_in_mask();
  config.cpus = {own_mask().front(), missing};
  config.threads = 2;
  Failure failure;
  EXPECT_FALSE(settle_cpus(config, failure));
  EXPECT_EQ(failure.exit_code, kExitUsage);
  EXPECT_EQ(failure.message, "cannot pin a worker to CPU " + std::to_string(missing) +
                                 " (--cpus): balance may run on " + cpu_list_text(own_mask()) + " only, exiting.");
}

TEST(SettleCpus, NoCpusLeavesTheConfigAlone) {
  cli::Config config;
  Failure failure;
  EXPECT_TRUE(settle_cpus(config, failure));
  EXPECT_TRUE(config.cpus.empty());
  EXPECT_EQ(config.threads, 0u);
}

}  // namespace
}  // namespace balance::master
