// Tests of the exact text of show, help, version and the MRTG lines (src/ctl/format.h).
#include "ctl/format.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "ctl_test_util.h"
#include "version.h"

namespace ctl = balance::ctl;
namespace core = balance::core;
using ctl::testing::endpoint;

namespace {

const std::string kHeader = "GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd\n";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void set_counters(core::Channel& ch, uint64_t totalc, uint64_t sent, uint64_t rcvd) {
  ch.totalc.store(totalc);
  ch.sent.store(sent);
  ch.rcvd.store(rcvd);
}

TEST(CtlFormat, ShowMatchesTheClassicExample) {
  auto table = ctl::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 21001), 0, true);
  table->append_channel(0, endpoint("127.0.0.1", 21002), 10, true);
  table->groups[1].type.store(static_cast<uint32_t>(core::GroupType::Hash));
  table->append_channel(1, endpoint("127.0.0.1", 21003), 0, true);
  table->append_channel(2, endpoint("127.0.0.1", 21000), 0, true);
  set_counters(table->groups[0].channels[0], 2, 10, 24);
  set_counters(table->groups[0].channels[1], 1, 5, 12);
  EXPECT_EQ(ctl::format_show(*table),
            kHeader +
                "  0   RR  0 ENA        127.0.0.1 21001    0           2    0          10          24\n"
                "  0   RR  1 ENA        127.0.0.1 21002    0           1   10           5          12\n"
                "  1 Hash  0 ENA        127.0.0.1 21003    0           0    0           0           0\n"
                "  2   RR  0 ENA        127.0.0.1 21000    0           0    0           0           0\n");
}

TEST(CtlFormat, ShowSkipsEmptyGroupsAndMarksDisabledChannels) {
  auto table = ctl::testing::empty_table();
  table->append_channel(3, endpoint("10.1.2.3", 80), 4, false);
  table->groups[3].channels[0].c.store(3);
  EXPECT_EQ(ctl::format_show(*table),
            kHeader + "  3   RR  0 dis         10.1.2.3    80    3           0    4           0           0\n");
}

TEST(CtlFormat, ShowOfAnEmptyTableIsTheHeader) {
  auto table = ctl::testing::empty_table();
  EXPECT_EQ(ctl::format_show(*table), kHeader);
}

TEST(CtlFormat, ShortIpv6KeepsTheClassicWidth) {
  auto table = ctl::testing::empty_table();
  table->append_channel(0, endpoint("::1", 8080), 0, true);
  EXPECT_EQ(ctl::format_show(*table),
            kHeader + "  0   RR  0 ENA              ::1  8080    0           0    0           0           0\n");
}

TEST(CtlFormat, LongIpv6WidensTheAddressColumnForTheWholeTable) {
  auto table = ctl::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 80), 0, true);
  table->append_channel(0, endpoint("2001:db8:85a3::8a2e:370:7334", 443), 0, true);
  const auto lines = lines_of(ctl::format_show(*table));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "GRP Type  #   S                   ip-address  port    c      totalc maxc        sent        rcvd");
  EXPECT_EQ(lines[1], "  0   RR  0 ENA                    127.0.0.1    80    0           0    0           0           0");
  EXPECT_EQ(lines[2], "  0   RR  1 ENA 2001:db8:85a3::8a2e:370:7334   443    0           0    0           0           0");
  // Every column after the address lines up with the header.
  EXPECT_EQ(lines[0].size(), lines[1].size());
  EXPECT_EQ(lines[0].size(), lines[2].size());
}

TEST(CtlFormat, BigCountersWidenTheirCellWithoutTruncation) {
  auto table = ctl::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 80), 0, true);
  set_counters(table->groups[0].channels[0], UINT64_MAX, UINT64_MAX, 1);
  const auto lines = lines_of(ctl::format_show(*table));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find(" 18446744073709551615 "), std::string::npos);
}

TEST(CtlFormat, HelpListsEveryCommandInOrderAligned) {
  const auto lines = lines_of(ctl::format_help());
  ASSERT_EQ(lines.size(), 18u);
  EXPECT_EQ(lines[0], "  create <host> <port>           creates a channel in the current group");
  const char* order[] = {"create", "assign", "disable", "enable", "group", "hash", "help", "kill", "maxc",
                         "mrtg-bytes", "mrtg-conns", "quit", "reset", "rr", "show", "version", "lc", "weight"};
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].rfind(std::string("  ") + order[i], 0), 0u) << lines[i];
    EXPECT_NE(lines[i][33], ' ') << "description starts in column 33: " << lines[i];
    EXPECT_EQ(lines[i][32], ' ') << lines[i];
  }
}

TEST(CtlFormat, WeightAndHealthColumnsAppearOnlyWhenTheyTellSomething) {
  auto table = ctl::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 80), 0, true);
  table->append_channel(0, endpoint("127.0.0.1", 81), 0, true, 5);
  EXPECT_EQ(ctl::format_show(*table),
            "GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd weight\n"
            "  0   RR  0 ENA        127.0.0.1    80    0           0    0           0           0      1\n"
            "  0   RR  1 ENA        127.0.0.1    81    0           0    0           0           0      5\n");
  table->header.flags.store(core::kFlagChecks);
  table->groups[0].channels[1].health.store(static_cast<uint32_t>(core::Health::Down));
  EXPECT_EQ(ctl::format_show(*table),
            "GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd weight health\n"
            "  0   RR  0 ENA        127.0.0.1    80    0           0    0           0           0      1     up\n"
            "  0   RR  1 ENA        127.0.0.1    81    0           0    0           0           0      5   down\n");
  table->groups[0].channels[1].weight.store(1);
  const auto lines = lines_of(ctl::format_show(*table));
  EXPECT_EQ(lines[0], kHeader.substr(0, kHeader.size() - 1) + " health");
  EXPECT_EQ(lines[2], "  0   RR  1 ENA        127.0.0.1    81    0           0    0           0           0   down");
}

TEST(CtlFormat, LeastConnectionsGroupsShowAsLC) {
  auto table = ctl::testing::empty_table();
  table->groups[0].type.store(static_cast<uint32_t>(core::GroupType::LeastConn));
  table->append_channel(0, endpoint("127.0.0.1", 80), 0, true);
  EXPECT_EQ(lines_of(ctl::format_show(*table))[1].substr(0, 12), "  0   LC  0 ");
}

TEST(CtlFormat, VersionNamesTheLimits) {
  EXPECT_EQ(ctl::format_version(),
            std::string("  This is balance ") + balance::kVersion + "\n  MAXGROUPS=32\n  MAXCHANNELS=64\n");
}

TEST(CtlFormat, MrtgLines) {
  auto table = ctl::testing::empty_table();
  table->append_channel(1, endpoint("127.0.0.1", 80), 0, true);
  table->append_channel(1, endpoint("127.0.0.1", 81), 0, true);
  set_counters(table->groups[1].channels[1], 7, 100, 2000);
  EXPECT_EQ(ctl::format_mrtg_bytes(*table, 1, 1), "2000\n100\nUNKNOWN\ngroup 1 channel 1\n");
  EXPECT_EQ(ctl::format_mrtg_conns(*table, 1, 1), "7\nUNKNOWN\nUNKNOWN\ngroup 1 channel 1\n");
}

}  // namespace
