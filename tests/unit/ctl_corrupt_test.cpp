// Tests that a corrupted or forged table (counts out of range, bad types, torn endpoints, random
// bytes) never makes any control command crash or read out of bounds (run under ASan+UBSan).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ctl/executor.h"
#include "ctl/format.h"
#include "ctl_test_util.h"

namespace ctl = balance::ctl;
namespace core = balance::core;

namespace {

ctl::Resolved resolve_to_loopback(std::string_view, std::string_view) {
  return {ctl::ResolveStatus::Ok, ctl::testing::endpoint("127.0.0.1", 80)};
}

const std::vector<std::string> kEveryCommand = {
    "show", "help", "version", "disable 0", "enable 63", "reset 5", "maxc 3 7", "hash", "rr", "group 31",
    "create x 80", "assign 0 x 80", "mrtg-bytes 31 63", "mrtg-conns 0 64", "disable 4294967295",
    "enable 64", "mrtg-bytes 0 4294967295", "group 0", "disable 63", "assign 63 x 80", "create y 80"};

void run_every_command(core::Table& table) {
  ctl::Executor executor(table, resolve_to_loopback, ctl::run_unlocked);
  ctl::Session session;
  for (uint32_t g : {0u, 17u, 31u}) {
    session.group = g;
    for (const auto& line : kEveryCommand) {
      const auto reply = executor.execute(line, session);
      ASSERT_LT(session.group, core::kMaxGroups);
    }
  }
}

TEST(CtlCorrupt, HugeCountsAndBadTypesAreClamped) {
  auto table = ctl::testing::empty_table();
  for (auto& g : table->groups) {
    g.nchannels.store(0xFFFFFFFFu);
    g.type.store(0xDEADBEEFu);
    g.cursor.store(0xFFFFFFFFu);
    for (auto& ch : g.channels) {
      ch.enabled.store(7);
      ch.endpoint_seq.store(1);  // a writer that never finished
      ch.c.store(UINT32_MAX);
      ch.maxc.store(UINT32_MAX);
      ch.totalc.store(UINT64_MAX);
    }
  }
  const std::string show = ctl::format_show(*table);
  EXPECT_EQ(std::count(show.begin(), show.end(), '\n'), 1 + core::kMaxGroups * core::kMaxChannels);
  EXPECT_NE(show.find("  0   RR  0 ENA                - "), std::string::npos);
  run_every_command(*table);
}

TEST(CtlCorrupt, GarbageEndpointsShowAsNoAddress) {
  auto table = ctl::testing::empty_table();
  table->append_channel(0, ctl::testing::endpoint("127.0.0.1", 80), 0, true);
  table->groups[0].channels[0].endpoint_words[0].store(0xFFFFFFFFFFFFFFFFull);  // family 0xFFFF
  EXPECT_NE(ctl::format_show(*table).find(" -     0 "), std::string::npos) << ctl::format_show(*table);
  run_every_command(*table);
}

TEST(CtlCorrupt, RandomBytesEverywhereNeverCrash) {
  std::mt19937_64 random(42);
  auto table = std::make_unique<core::Table>();
  for (int round = 0; round < 20; ++round) {
    auto* bytes = reinterpret_cast<unsigned char*>(table.get());
    for (size_t i = 0; i < sizeof(core::Table); ++i) bytes[i] = static_cast<unsigned char>(random());
    (void)ctl::format_show(*table);
    run_every_command(*table);
  }
}

}  // namespace
