// settle_loopback_cc(): what start-up does with --loopback-cc before the listeners open. The kernel
// here has every built-in algorithm, so the default being unusable is shown with a name no kernel
// has, left as a default (not named on the command line).

#include <string>

#include <gtest/gtest.h>

#include "master/master.h"

namespace balance::master {
namespace {

constexpr const char* kNoSuch = "no-such-cc";

TEST(SettleLoopbackCc, AnUnusableDefaultIsDroppedAndSaidForDebug) {
  cli::Config config;
  config.loopback_cc = kNoSuch;
  ASSERT_FALSE(config.loopback_cc_given);
  Failure failure;
  std::string note;
  EXPECT_TRUE(settle_loopback_cc(config, failure, note));
  EXPECT_EQ(config.loopback_cc, "");  // the sockets keep the system's algorithm
  EXPECT_EQ(note.rfind("congestion control no-such-cc for loopback connections: ", 0), 0u) << note;
  EXPECT_TRUE(note.ends_with("; they keep the system's")) << note;
  EXPECT_EQ(failure.message, "");
}

TEST(SettleLoopbackCc, AnUnusableNamedOneIsAnOsError) {
  cli::Config config;
  config.loopback_cc = kNoSuch;
  config.loopback_cc_given = true;
  Failure failure;
  std::string note;
  EXPECT_FALSE(settle_loopback_cc(config, failure, note));
  EXPECT_EQ(failure.exit_code, kExitOsErr);
  EXPECT_EQ(failure.message.rfind("cannot use congestion control no-such-cc (--loopback-cc): ", 0), 0u)
      << failure.message;
  EXPECT_TRUE(failure.message.ends_with(", exiting.")) << failure.message;
  EXPECT_EQ(failure.message.find('\n'), std::string::npos);
  EXPECT_EQ(note, "");
}

TEST(SettleLoopbackCc, AUsableOneIsKeptWithoutANote) {
  for (const bool given : {false, true}) {
    cli::Config config;
    config.loopback_cc = "reno";  // built into every kernel
    config.loopback_cc_given = given;
    Failure failure;
    std::string note;
    EXPECT_TRUE(settle_loopback_cc(config, failure, note));
    EXPECT_EQ(config.loopback_cc, "reno");
    EXPECT_EQ(note, "");
    EXPECT_EQ(failure.message, "");
  }
}

TEST(SettleLoopbackCc, TheSystemsAlgorithmNeedsNoCheck) {
  cli::Config config;
  config.loopback_cc = "";  // --loopback-cc system
  config.loopback_cc_given = true;
  Failure failure;
  std::string note;
  EXPECT_TRUE(settle_loopback_cc(config, failure, note));
  EXPECT_EQ(note, "");
  EXPECT_EQ(failure.message, "");
}

}  // namespace
}  // namespace balance::master
