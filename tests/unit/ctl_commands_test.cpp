// Tests of the control command language (src/ctl/commands.h): abbreviations, ties, tokens, numbers.
#include "ctl/commands.h"

#include <gtest/gtest.h>

#include <string>

namespace ctl = balance::ctl;
using ctl::Command;

namespace {

TEST(CtlCommands, FullNamesMatchThemselves) {
  EXPECT_EQ(ctl::match_command("quit"), Command::Quit);
  EXPECT_EQ(ctl::match_command("show"), Command::Show);
  EXPECT_EQ(ctl::match_command("help"), Command::Help);
  EXPECT_EQ(ctl::match_command("?"), Command::Help);
  EXPECT_EQ(ctl::match_command("kill"), Command::Kill);
  EXPECT_EQ(ctl::match_command("disable"), Command::Disable);
  EXPECT_EQ(ctl::match_command("group"), Command::Group);
  EXPECT_EQ(ctl::match_command("reset"), Command::Reset);
  EXPECT_EQ(ctl::match_command("enable"), Command::Enable);
  EXPECT_EQ(ctl::match_command("create"), Command::Create);
  EXPECT_EQ(ctl::match_command("assign"), Command::Assign);
  EXPECT_EQ(ctl::match_command("maxc"), Command::Maxc);
  EXPECT_EQ(ctl::match_command("mrtg-bytes"), Command::MrtgBytes);
  EXPECT_EQ(ctl::match_command("mrtg-conns"), Command::MrtgConns);
  EXPECT_EQ(ctl::match_command("version"), Command::Version);
  EXPECT_EQ(ctl::match_command("hash"), Command::Hash);
  EXPECT_EQ(ctl::match_command("rr"), Command::Rr);
  EXPECT_EQ(ctl::match_command("weight"), Command::Weight);
  EXPECT_EQ(ctl::match_command("lc"), Command::Lc);
}

TEST(CtlCommands, TiesGoByTheClassicOrder) {
  EXPECT_EQ(ctl::match_command("q"), Command::Quit);
  EXPECT_EQ(ctl::match_command("s"), Command::Show);
  EXPECT_EQ(ctl::match_command("sh"), Command::Show);
  EXPECT_EQ(ctl::match_command("h"), Command::Help);  // help before hash
  EXPECT_EQ(ctl::match_command("ha"), Command::Hash);
  EXPECT_EQ(ctl::match_command("k"), Command::Kill);
  EXPECT_EQ(ctl::match_command("d"), Command::Disable);
  EXPECT_EQ(ctl::match_command("g"), Command::Group);
  EXPECT_EQ(ctl::match_command("r"), Command::Reset);  // reset before rr
  EXPECT_EQ(ctl::match_command("rr"), Command::Rr);
  EXPECT_EQ(ctl::match_command("e"), Command::Enable);
  EXPECT_EQ(ctl::match_command("c"), Command::Create);
  EXPECT_EQ(ctl::match_command("a"), Command::Assign);
  EXPECT_EQ(ctl::match_command("m"), Command::Maxc);  // maxc before mrtg-*
  EXPECT_EQ(ctl::match_command("mr"), Command::MrtgBytes);
  EXPECT_EQ(ctl::match_command("mrtg-"), Command::MrtgBytes);
  EXPECT_EQ(ctl::match_command("mrtg-c"), Command::MrtgConns);
  EXPECT_EQ(ctl::match_command("v"), Command::Version);
  EXPECT_EQ(ctl::match_command("w"), Command::Weight);
  EXPECT_EQ(ctl::match_command("l"), Command::Lc);
}

TEST(CtlCommands, UnknownWordsMatchNothing) {
  for (const char* word : {"", "x", "shows", "exit", "Show", "QUIT", "??", "mrtg-x", "rrr", "-", "\x01"}) {
    EXPECT_FALSE(ctl::match_command(word).has_value()) << word;
  }
}

TEST(CtlCommands, CommandNamesAreInHelpOrder) {
  const auto& names = ctl::command_names();
  ASSERT_EQ(names.size(), 18u);
  EXPECT_EQ(names.front(), "create");
  EXPECT_EQ(names[15], "version");  // the last classic one; the additions follow
  EXPECT_EQ(names.back(), "weight");
  for (const auto name : names) EXPECT_TRUE(ctl::match_command(name).has_value()) << name;
}

TEST(CtlCommands, TokenizeSplitsOnBlanks) {
  const auto tokens = ctl::tokenize("  maxc\t1   16 \r\n");
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens[0], "maxc");
  EXPECT_EQ(tokens[1], "1");
  EXPECT_EQ(tokens[2], "16");
  EXPECT_TRUE(ctl::tokenize("").empty());
  EXPECT_TRUE(ctl::tokenize(" \t \r").empty());
}

TEST(CtlCommands, TokenizeKeepsAtMostTheBound) {
  std::string many;
  for (int i = 0; i < 100; ++i) many += "x ";
  EXPECT_EQ(ctl::tokenize(many).size(), ctl::kMaxTokens);
}

TEST(CtlCommands, NumbersAreBounded) {
  using S = ctl::NumberStatus;
  EXPECT_EQ(ctl::parse_number("0", 10).status, S::Ok);
  EXPECT_EQ(ctl::parse_number("10", 10).value, 10u);
  EXPECT_EQ(ctl::parse_number("007", 10).value, 7u);
  EXPECT_EQ(ctl::parse_number("11", 10).status, S::Range);
  EXPECT_EQ(ctl::parse_number("99999999999999", UINT32_MAX).status, S::Range);
  EXPECT_EQ(ctl::parse_number("4294967295", UINT32_MAX).value, 4294967295u);
  EXPECT_EQ(ctl::parse_number("4294967296", UINT32_MAX).status, S::Range);
  EXPECT_EQ(ctl::parse_number("99999999999999999999999999999", UINT64_MAX).status, S::Range);
  EXPECT_EQ(ctl::parse_number("-1", 10).status, S::Range);
  EXPECT_EQ(ctl::parse_number("-0", 10).status, S::Ok);
  for (const char* bad : {"", "-", "abc", "1a", "+1", " 1", "0x10", "1.5", "--1"}) {
    EXPECT_EQ(ctl::parse_number(bad, 10).status, S::Syntax) << bad;
  }
}

}  // namespace
