// The CPUs the workers run on: cpu_list_text(), and settle_cpus() against this process's own
// affinity mask (whatever the machine running the test has).

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cpu_mask_util.h"
#include "master/cpus.h"

namespace balance::master {
namespace {

using test::own_cpu_mask;
using test::cpu_outside_own_mask;

TEST(CpuListText, RunsOfConsecutiveCpusAsRanges) {
  EXPECT_EQ(cpu_list_text({}), "");
  EXPECT_EQ(cpu_list_text({0}), "0");
  EXPECT_EQ(cpu_list_text({0, 1}), "0-1");
  EXPECT_EQ(cpu_list_text({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(cpu_list_text({5, 3, 4}), "5,3-4");  // the order given, as --cpus maps workers
}

TEST(AllowedCpus, TheProcesssAffinityMask) {
  EXPECT_EQ(allowed_cpus(), own_cpu_mask());
}

TEST(WorkerThreads, ThreadsElseOnePerAllowedCpu) {
  cli::Config config;
  EXPECT_EQ(worker_threads(config), own_cpu_mask().size());
  config.threads = 7;
  EXPECT_EQ(worker_threads(config), 7u);
}

TEST(SettleCpus, AllBecomesTheMaskAndSetsTheThreadCount) {
  cli::Config config;
  config.cpus_all = true;
  Failure failure;
  ASSERT_TRUE(settle_cpus(config, failure)) << failure.message;
  EXPECT_EQ(config.cpus, own_cpu_mask());
  EXPECT_EQ(config.threads, own_cpu_mask().size());
}

TEST(SettleCpus, AllWithAnotherThreadCountIsAUsageError) {
  cli::Config config;
  config.cpus_all = true;
  config.threads = static_cast<unsigned>(own_cpu_mask().size()) + 1;
  Failure failure;
  EXPECT_FALSE(settle_cpus(config, failure));
  EXPECT_EQ(failure.exit_code, kExitUsage);
  EXPECT_EQ(failure.message, "--threads " + std::to_string(config.threads) + " and --cpus all (" +
                                 std::to_string(own_cpu_mask().size()) + " CPUs: " + cpu_list_text(own_cpu_mask()) +
                                 ") disagree (one worker per CPU), exiting.");
}

TEST(SettleCpus, ACpuOutsideTheMaskIsAUsageError) {
  cli::Config config;
  const unsigned missing = cpu_outside_own_mask();
  config.cpus = {own_cpu_mask().front(), missing};
  config.threads = 2;
  Failure failure;
  EXPECT_FALSE(settle_cpus(config, failure));
  EXPECT_EQ(failure.exit_code, kExitUsage);
  EXPECT_EQ(failure.message, "cannot pin a worker to CPU " + std::to_string(missing) +
                                 " (--cpus): balance may run on " + cpu_list_text(own_cpu_mask()) + " only, exiting.");
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
