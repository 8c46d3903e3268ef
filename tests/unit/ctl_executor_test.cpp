// Tests of every control command's effect and exact output on a heap table (src/ctl/executor.h).
#include "ctl/executor.h"

#include <gtest/gtest.h>

#include <string>

#include "ctl/format.h"
#include "ctl_test_util.h"

namespace ctl = balance::ctl;
namespace core = balance::core;
using ctl::testing::endpoint;

namespace {

// Resolves a few fixed names; "bad" hosts and "nope" ports fail.
ctl::Resolved fake_resolve(std::string_view host, std::string_view port) {
  ctl::Resolved r;
  if (host == "good.example" || host == "10.0.0.1") {
    r.endpoint = endpoint("10.0.0.1", 0);
  } else if (host == "v6.example") {
    r.endpoint = endpoint("2001:db8::1", 0);
  } else {
    return {ctl::ResolveStatus::BadHost, {}};
  }
  if (port == "80" || port == "http") {
    r.endpoint.port = 80;
  } else if (port == "8080") {
    r.endpoint.port = 8080;
  } else {
    return {ctl::ResolveStatus::BadPort, {}};
  }
  r.status = ctl::ResolveStatus::Ok;
  return r;
}

class CtlExecutor : public ::testing::Test {
 protected:
  void SetUp() override {
    table_->append_channel(0, endpoint("127.0.0.1", 21001), 0, true);
    table_->append_channel(0, endpoint("127.0.0.1", 21002), 10, true);
    table_->append_channel(1, endpoint("127.0.0.1", 21003), 0, true);
  }
  std::string run(std::string_view line) { return executor_.execute(line, session_).out; }
  core::Channel& channel(uint32_t g, uint32_t c) { return table_->groups[g].channels[c]; }

  std::unique_ptr<core::Table> table_ = ctl::testing::empty_table();  // before executor_
  ctl::Executor executor_{*table_, fake_resolve, ctl::run_unlocked};
  ctl::Session session_;
};

TEST_F(CtlExecutor, EmptyLinesPrintNothing) {
  EXPECT_EQ(run(""), "");
  EXPECT_EQ(run("   \t "), "");
  EXPECT_EQ(executor_.execute("", session_).action, ctl::Action::None);
}

TEST_F(CtlExecutor, UnknownCommandsAndMissingArgumentsAreSyntaxErrors) {
  for (const char* line : {"frobnicate", "exit", "disable", "enable", "reset", "maxc", "maxc 1", "group", "create",
                           "create host", "assign", "assign 0", "assign 0 host", "mrtg-bytes", "mrtg-bytes 0",
                           "mrtg-conns 0", "SHOW"}) {
    EXPECT_EQ(run(line), "syntax error\n") << line;
  }
}

TEST_F(CtlExecutor, ShowHelpVersionPrintTheirText) {
  EXPECT_EQ(run("show"), ctl::format_show(*table_));
  EXPECT_EQ(run("sh"), ctl::format_show(*table_));
  EXPECT_EQ(run("s extra args ignored"), ctl::format_show(*table_));
  EXPECT_EQ(run("help"), ctl::format_help());
  EXPECT_EQ(run("?"), ctl::format_help());
  EXPECT_EQ(run("h"), ctl::format_help());
  EXPECT_EQ(run("version"), ctl::format_version());
  EXPECT_EQ(run("v"), ctl::format_version());
}

TEST_F(CtlExecutor, DisableAndEnable) {
  EXPECT_EQ(run("disable 1"), "channel 1 disabled\n");
  EXPECT_EQ(channel(0, 1).enabled.load(), 0u);
  EXPECT_EQ(run("disable 1"), "channel 1 already disabled\n");
  EXPECT_EQ(run("d 1"), "channel 1 already disabled\n");
  EXPECT_EQ(run("enable 1"), "channel 1 enabled\n");
  EXPECT_EQ(channel(0, 1).enabled.load(), 1u);
  EXPECT_EQ(run("e 1"), "channel 1 already enabled\n");
  EXPECT_EQ(run("disable 2"), "no such channel 2\n");
  EXPECT_EQ(run("enable 99"), "no such channel 99\n");
  EXPECT_EQ(run("enable 007"), "no such channel 7\n");
  EXPECT_EQ(run("disable x"), "syntax error\n");
  // A number too large or negative names no channel either, and is shown as typed.
  EXPECT_EQ(run("disable -1"), "no such channel -1\n");
  EXPECT_EQ(run("enable 99999999999999"), "no such channel 99999999999999\n");
  EXPECT_EQ(run("reset -3"), "no such channel -3\n");
}

TEST_F(CtlExecutor, ResetZeroesTotalsAndBytesButNotCurrentConnections) {
  core::Channel& ch = channel(0, 0);
  ch.totalc.store(5);
  ch.sent.store(6);
  ch.rcvd.store(7);
  ch.c.store(2);
  EXPECT_EQ(run("reset 0"), "channel 0 counters reset\n");
  EXPECT_EQ(ch.totalc.load(), 0u);
  EXPECT_EQ(ch.sent.load(), 0u);
  EXPECT_EQ(ch.rcvd.load(), 0u);
  EXPECT_EQ(ch.c.load(), 2u);
  EXPECT_EQ(run("reset 5"), "no such channel 5\n");
  EXPECT_EQ(run("r 0"), "channel 0 counters reset\n");
}

TEST_F(CtlExecutor, Maxc) {
  EXPECT_EQ(run("maxc 0 16"), "maxc of channel 0 changed to 16\n");
  EXPECT_EQ(channel(0, 0).maxc.load(), 16u);
  EXPECT_EQ(run("m 0 0"), "maxc of channel 0 changed to 0\n");
  EXPECT_EQ(channel(0, 0).maxc.load(), 0u);
  EXPECT_EQ(run("maxc 5 1"), "unknown channel\n");
  EXPECT_EQ(run("maxc 1 99999999999999"), "value out of range\n");
  EXPECT_EQ(run("maxc 1 abc"), "syntax error\n");
  EXPECT_EQ(run("maxc abc 1"), "syntax error\n");
  EXPECT_EQ(run("maxc -1 1"), "unknown channel\n");
  EXPECT_EQ(run("maxc 5 -1"), "unknown channel\n");  // the channel is looked at first
  EXPECT_EQ(run("maxc 1 -1"), "value out of range\n");
  EXPECT_EQ(channel(0, 1).maxc.load(), 10u);
}

TEST_F(CtlExecutor, Weight) {
  EXPECT_EQ(run("weight 1 5"), "weight of channel 1 changed to 5\n");
  EXPECT_EQ(channel(0, 1).weight.load(), 5u);
  EXPECT_EQ(run("w 1 1000000"), "weight of channel 1 changed to 1000000\n");
  EXPECT_EQ(run("weight 1 1000001"), "value out of range\n");
  EXPECT_EQ(run("weight 1 0"), "value out of range\n");
  EXPECT_EQ(run("weight 1 x"), "syntax error\n");
  EXPECT_EQ(run("weight 1"), "syntax error\n");
  EXPECT_EQ(run("weight 7 2"), "unknown channel\n");
  EXPECT_EQ(run("weight -1 2"), "unknown channel\n");
  EXPECT_EQ(run("weight 7 0"), "unknown channel\n");
  EXPECT_EQ(channel(0, 1).weight.load(), 1000000u);
}

TEST_F(CtlExecutor, GroupChangesTheCurrentGroupSilently) {
  EXPECT_EQ(run("group 1"), "");
  EXPECT_EQ(session_.group, 1u);
  EXPECT_EQ(run("disable 0"), "channel 0 disabled\n");
  EXPECT_EQ(channel(1, 0).enabled.load(), 0u);
  EXPECT_EQ(channel(0, 0).enabled.load(), 1u);
  EXPECT_EQ(run("disable 1"), "no such channel 1\n");
  EXPECT_EQ(run("group 31"), "");
  EXPECT_EQ(run("group 32"), "value out of range\n");
  EXPECT_EQ(run("group 99999999999999999999"), "value out of range\n");
  EXPECT_EQ(run("group -1"), "value out of range\n");
  EXPECT_EQ(run("group x"), "syntax error\n");
  EXPECT_EQ(session_.group, 31u);
  EXPECT_EQ(run("g 0"), "");
  EXPECT_EQ(session_.group, 0u);
}

TEST_F(CtlExecutor, HashAndRoundRobinSetTheCurrentGroupsType) {
  EXPECT_EQ(run("hash"), "group 0 set to hash\n");
  EXPECT_EQ(table_->group_type(0), core::GroupType::Hash);
  EXPECT_EQ(run("rr"), "group 0 set to round robin\n");
  EXPECT_EQ(table_->group_type(0), core::GroupType::RoundRobin);
  EXPECT_EQ(run("lc"), "group 0 set to least connections\n");
  EXPECT_EQ(table_->group_type(0), core::GroupType::LeastConn);
  EXPECT_EQ(run("rr"), "group 0 set to round robin\n");
  run("group 5");
  EXPECT_EQ(run("ha"), "group 5 set to hash\n");
  EXPECT_EQ(table_->group_type(5), core::GroupType::Hash);
}

TEST_F(CtlExecutor, CreateAppendsADisabledChannelToTheCurrentGroup) {
  EXPECT_EQ(run("create good.example 80"), "channel created\n");
  ASSERT_EQ(table_->channel_count(0), 3u);
  EXPECT_EQ(channel(0, 2).enabled.load(), 0u);
  EXPECT_EQ(channel(0, 2).endpoint(), endpoint("10.0.0.1", 80));
  run("group 4");
  EXPECT_EQ(run("c v6.example http"), "channel created\n");
  EXPECT_EQ(channel(4, 0).endpoint(), endpoint("2001:db8::1", 80));
  EXPECT_EQ(run("create no.such.host 80"), "invalid address\n");
  EXPECT_EQ(run("create good.example nope"), "invalid port\n");
  EXPECT_EQ(table_->channel_count(4), 1u);
}

TEST_F(CtlExecutor, CreateInAFullGroupSaysSo) {
  run("group 7");
  for (uint32_t i = 0; i < core::kMaxChannels; ++i) ASSERT_EQ(run("create good.example 80"), "channel created\n");
  EXPECT_EQ(run("create good.example 80"), "group 7 is full\n");
  EXPECT_EQ(table_->channel_count(7), core::kMaxChannels);
}

TEST_F(CtlExecutor, AssignOnlyOnADisabledChannelAndOnlyWithAValidAddress) {
  EXPECT_EQ(run("assign 0 good.example 80"), "channel must be disabled to assign new address\n");
  EXPECT_EQ(channel(0, 0).endpoint(), endpoint("127.0.0.1", 21001));
  run("disable 0");
  EXPECT_EQ(run("assign 0 no.such.host 80"), "invalid address\n");
  EXPECT_EQ(channel(0, 0).endpoint(), endpoint("127.0.0.1", 21001));  // unchanged, unlike 3.57
  EXPECT_EQ(run("assign 0 good.example nope"), "invalid port\n");
  EXPECT_EQ(channel(0, 0).endpoint(), endpoint("127.0.0.1", 21001));
  EXPECT_EQ(run("assign 0 good.example 8080"), "channel reassigned\n");
  EXPECT_EQ(channel(0, 0).endpoint(), endpoint("10.0.0.1", 8080));
  EXPECT_EQ(channel(0, 0).enabled.load(), 0u);
  EXPECT_EQ(run("a 0 v6.example 80"), "channel reassigned\n");
  EXPECT_EQ(channel(0, 0).endpoint(), endpoint("2001:db8::1", 80));
  EXPECT_EQ(run("assign 9 good.example 80"), "unknown channel\n");
  EXPECT_EQ(run("assign -1 good.example 80"), "unknown channel\n");
  EXPECT_EQ(run("assign x good.example 80"), "syntax error\n");
}

TEST_F(CtlExecutor, MrtgTakesAnExplicitGroup) {
  channel(1, 0).totalc.store(3);
  channel(1, 0).sent.store(40);
  channel(1, 0).rcvd.store(500);
  EXPECT_EQ(run("mrtg-bytes 1 0"), "500\n40\nUNKNOWN\ngroup 1 channel 0\n");
  EXPECT_EQ(run("mr 1 0"), "500\n40\nUNKNOWN\ngroup 1 channel 0\n");
  EXPECT_EQ(run("mrtg-conns 1 0"), "3\nUNKNOWN\nUNKNOWN\ngroup 1 channel 0\n");
  EXPECT_EQ(run("mrtg-c 1 0"), "3\nUNKNOWN\nUNKNOWN\ngroup 1 channel 0\n");
  EXPECT_EQ(run("mrtg-bytes 32 0"), "unknown group\n");
  EXPECT_EQ(run("mrtg-bytes 1 1"), "unknown channel\n");
  EXPECT_EQ(run("mrtg-conns 5 0"), "unknown channel\n");
  EXPECT_EQ(run("mrtg-conns x 0"), "syntax error\n");
  EXPECT_EQ(run("mrtg-conns 0 99999999999999"), "unknown channel\n");
  EXPECT_EQ(run("mrtg-conns 0 -1"), "unknown channel\n");
  EXPECT_EQ(run("mrtg-bytes -1 0"), "unknown group\n");
  EXPECT_EQ(run("mrtg-bytes 99999999999999 0"), "unknown group\n");
}

TEST_F(CtlExecutor, KillAndQuitAreLeftToTheCaller) {
  EXPECT_EQ(executor_.execute("kill", session_).action, ctl::Action::Kill);
  EXPECT_EQ(executor_.execute("k", session_).action, ctl::Action::Kill);
  EXPECT_EQ(executor_.execute("quit", session_).action, ctl::Action::Quit);
  EXPECT_EQ(executor_.execute("q", session_).action, ctl::Action::Quit);
  EXPECT_EQ(run("quit"), "");
}

TEST_F(CtlExecutor, OverlongLinesAreRefusedUnparsed) {
  const std::string line = "disable 0" + std::string(2000, ' ');
  EXPECT_EQ(run(line), "line too long\n");
  EXPECT_EQ(channel(0, 0).enabled.load(), 1u);
}

TEST_F(CtlExecutor, ABusyWriterLockChangesNothing) {
  ctl::Executor busy(*table_, fake_resolve, [](const std::function<void()>&) { return false; });
  EXPECT_EQ(busy.execute("disable 0", session_).out, "control segment busy, try again\n");
  EXPECT_EQ(busy.execute("create good.example 80", session_).out, "control segment busy, try again\n");
  EXPECT_EQ(channel(0, 0).enabled.load(), 1u);
  EXPECT_EQ(table_->channel_count(0), 2u);
  EXPECT_EQ(busy.execute("show", session_).out, ctl::format_show(*table_));  // readers never lock
}

TEST_F(CtlExecutor, GarbageBytesNeverCrash) {
  std::string line;
  uint32_t seed = 12345;
  for (int i = 0; i < 5000; ++i) {
    line.clear();
    const size_t length = (seed = seed * 1103515245u + 12345u) % 40;
    for (size_t j = 0; j < length; ++j) {
      seed = seed * 1103515245u + 12345u;
      const char alphabet[] = "0123456789 -\tsdehmcagrkvq?x\n\xff";
      line += alphabet[(seed >> 16) % (sizeof alphabet - 1)];
    }
    const auto reply = executor_.execute(line, session_);
    EXPECT_LT(session_.group, core::kMaxGroups);
    (void)reply;
  }
}

}  // namespace
