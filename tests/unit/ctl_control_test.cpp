// Tests of the -c and piped -i clients end to end in one process (src/ctl/control.h): this
// process is the master, stdin is a pipe, stdout and stderr are captured.
#include "ctl/control.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "ctl/format.h"
#include "ctl_segment_fixture.h"
#include "ctl_test_util.h"
#include "version.h"

namespace ctl = balance::ctl;
namespace cli = balance::cli;
using ctl::testing::SegmentFixture;

namespace {

struct Ran {
  int code;
  std::string out;
  std::string err;
};

class CtlControl : public SegmentFixture {
 protected:
  cli::Config config(cli::Mode mode, const std::string& command = "") const {
    cli::Config c;
    c.mode = mode;
    c.port = id_.port;
    c.bind_text = id_.bind_text;
    c.use_mmap = id_.use_mmap;
    c.command = command;
    return c;
  }
  static Ran capture(const std::function<int()>& body) {
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    const int code = body();
    std::string out = ::testing::internal::GetCapturedStdout();
    return {code, out, ::testing::internal::GetCapturedStderr()};
  }
  Ran command(const std::string& cmd) {
    const auto c = config(cli::Mode::Command, cmd);
    return capture([&] { return ctl::run_command(c); });
  }
  // Runs the shell with `input` on a pipe as standard input.
  Ran shell(const std::string& input) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    EXPECT_EQ(::write(fds[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
    ::close(fds[1]);
    const int saved = ::dup(STDIN_FILENO);
    ::dup2(fds[0], STDIN_FILENO);
    ::close(fds[0]);
    const auto c = config(cli::Mode::Interactive);
    Ran ran = capture([&] { return ctl::run_shell(c); });
    ::dup2(saved, STDIN_FILENO);
    ::close(saved);
    return ran;
  }
  std::string banner() const {
    return std::string("balance ") + balance::kVersion + " interactive command shell\nPID of master process is " +
           std::to_string(::getpid()) + "\n";
  }
  void SetUp() override {
    SegmentFixture::SetUp();
    master_ = create();
    ASSERT_TRUE(master_);
    master_->table().append_channel(0, ctl::testing::endpoint("127.0.0.1", 21001), 0, true);
    master_->table().append_channel(0, ctl::testing::endpoint("127.0.0.1", 21002), 10, true);
  }
  std::unique_ptr<ctl::Segment> master_;
};

TEST_P(CtlControl, CommandPrintsItsOutputAndExitsZero) {
  auto ran = command("show");
  EXPECT_EQ(ran.code, 0);
  EXPECT_EQ(ran.out, ctl::format_show(master_->table()));
  EXPECT_EQ(ran.err, "");
  ran = command("disable 1");
  EXPECT_EQ(ran.out, "channel 1 disabled\n");
  EXPECT_EQ(master_->table().groups[0].channels[1].enabled.load(), 0u);
  ran = command("bogus");
  EXPECT_EQ(ran.code, 0);
  EXPECT_EQ(ran.out, "syntax error\n");
  ran = command("");
  EXPECT_EQ(ran.code, 0);
  EXPECT_EQ(ran.out, "");
  ran = command("create 127.0.0.1 smtp");
  EXPECT_EQ(ran.out, "channel created\n");
  EXPECT_EQ(master_->table().groups[0].channels[2].endpoint().to_string(), "127.0.0.1:25");
}

TEST_P(CtlControl, CommandWithoutMasterSaysSoOnStderr) {
  master_.reset();
  const auto ran = command("show");
  EXPECT_EQ(ran.code, 69);
  EXPECT_EQ(ran.out, "");
  EXPECT_EQ(ran.err, "no master process, exiting.\n");
}

TEST_P(CtlControl, PipedShellTranscript) {
  const std::string show = ctl::format_show(master_->table());
  const auto ran = shell("show\ngroup 1\nhash\ncreate 127.0.0.1 80\n\ndisable 0\nbogus\ngroup 0\nmaxc 1 3\n");
  EXPECT_EQ(ran.code, 0);
  EXPECT_EQ(ran.err, "");
  EXPECT_EQ(ran.out, banner() + "balance[0] " + show +
                         "balance[0] balance[1] group 1 set to hash\n"
                         "balance[1] channel created\n"
                         "balance[1] balance[1] channel 0 already disabled\n"
                         "balance[1] syntax error\n"
                         "balance[1] balance[0] maxc of channel 1 changed to 3\n"
                         "balance[0] \n");
}

TEST_P(CtlControl, ShellQuitAndEndOfInput) {
  auto ran = shell("quit\nshow\n");
  EXPECT_EQ(ran.code, 0);
  EXPECT_EQ(ran.out, banner() + "balance[0] ");
  ran = shell("");
  EXPECT_EQ(ran.code, 0);
  EXPECT_EQ(ran.out, banner() + "balance[0] \n");
  ran = shell(std::string(5000, 'x') + "\nversion");
  EXPECT_EQ(ran.out, banner() + "balance[0] line too long\nbalance[0] " + ctl::format_version() + "balance[0] \n");
}

TEST_P(CtlControl, ShellNoticesAMasterThatWentAway) {
  // The segment stays mapped in the shell; the master's pid no longer matches.
  auto& header = master_->table().header;
  const auto ran = shell("show\n");
  EXPECT_EQ(ran.code, 0);
  header.master_start_ticks += 1;
  const auto gone = shell("show\n");
  header.master_start_ticks -= 1;
  EXPECT_EQ(gone.code, 69);
  EXPECT_EQ(gone.err, "no master process, exiting.\n");
}

TEST_P(CtlControl, DebugTracesTheAttachOnStderr) {
  auto c = config(cli::Mode::Command, "version");
  c.debug = true;
  const auto ran = capture([&] { return ctl::run_command(c); });
  EXPECT_EQ(ran.out, ctl::format_version());
  EXPECT_NE(ran.err.find("balance: attach: "), std::string::npos) << ran.err;
  EXPECT_NE(ran.err.find("master pid " + std::to_string(::getpid())), std::string::npos) << ran.err;
}

INSTANTIATE_TEST_SUITE_P(Both, CtlControl, ::testing::Values(false, true), ctl::testing::mechanism_name);

}  // namespace
