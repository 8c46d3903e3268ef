// Tests of `kill` (src/ctl/kill.h): graceful stop, escalation, and refusing to signal anything
// that is not the segment's own live master. Masters are forked children.
#include "ctl/kill.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "ctl/proc.h"
#include "ctl_segment_fixture.h"

namespace ctl = balance::ctl;
using ctl::testing::SegmentFixture;

namespace {

class CtlKill : public SegmentFixture {
 protected:
  enum class OnTerm { Die, Ignore, DieOnSecond };
  // Forks a master that creates the segment and waits, reacting to SIGTERM as told.
  pid_t fork_master(OnTerm on_term) {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(ready[0]);
      if (on_term == OnTerm::Ignore) ::signal(SIGTERM, SIG_IGN);
      if (on_term == OnTerm::DieOnSecond) ::signal(SIGTERM, on_sigterm_die_on_second);
      balance::Failure failure;
      auto seg = ctl::Segment::create(id_, failure);
      if (!seg) ::_exit(1);
      (void)!::write(ready[1], "r", 1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    children_.push_back(child);
    char byte = 0;
    EXPECT_EQ(::read(ready[0], &byte, 1), 1);  // blocks until the segment exists
    ::close(ready[0]);
    return child;
  }
  static void on_sigterm_die_on_second(int) {
    static volatile sig_atomic_t seen = 0;
    if (seen != 0) ::_exit(3);
    seen = 1;
  }
  int wait_exit_code(pid_t child) {
    const int status = reap(child);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  int wait_signal(pid_t child) {
    const int status = reap(child);
    return WIFSIGNALED(status) ? WTERMSIG(status) : -1;
  }
  int reap(pid_t child) {
    int status = 0;
    ::waitpid(child, &status, 0);
    std::erase(children_, child);  // its pid may be reused from now on
    return status;
  }
  void TearDown() override {
    for (const pid_t child : children_) {  // a failed test must not leave a master behind
      if (::kill(child, SIGKILL) == 0) ::waitpid(child, nullptr, 0);
    }
    SegmentFixture::TearDown();
  }
  std::unique_ptr<ctl::Segment> attach() {
    balance::Failure failure;
    auto seg = ctl::Segment::attach(id_, failure);
    EXPECT_TRUE(seg) << failure.message;
    return seg;
  }

  std::vector<pid_t> children_;
};

TEST_P(CtlKill, StopsTheMasterGracefullyAndRemovesTheSegment) {
  const pid_t master = fork_master(OnTerm::Die);
  auto seg = attach();
  ASSERT_TRUE(seg);
  EXPECT_EQ(seg->live_master(true), master);
  const auto outcome = ctl::kill_master(*seg);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.message, "shutdown complete, exiting.");
  EXPECT_EQ(wait_signal(master), SIGTERM);
  struct stat st{};
  EXPECT_NE(::stat(path().c_str(), &st), 0);
  EXPECT_EQ(attach_failure().exit_code, 69);
}

TEST_P(CtlKill, EscalatesToSigkill) {
  const pid_t master = fork_master(OnTerm::Ignore);
  auto seg = attach();
  ASSERT_TRUE(seg);
  const auto outcome = ctl::kill_master(*seg, {50, 50, 3000});
  EXPECT_EQ(outcome.message, "shutdown complete, exiting.");
  EXPECT_EQ(wait_signal(master), SIGKILL);
}

TEST_P(CtlKill, AnAdoptingSuccessorIsTheMasterOnceThePredecessorIsGone) {
  auto predecessor = create();
  ASSERT_TRUE(predecessor);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t successor = ::fork();
  if (successor == 0) {
    balance::Failure failure;
    auto seg = ctl::Segment::adopt(id_, ::dup(predecessor->fd()), failure);
    if (!seg) ::_exit(1);
    (void)!::write(ready[1], "r", 1);
    for (;;) ::pause();
  }
  children_.push_back(successor);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  predecessor.reset();
  auto seg = attach();
  ASSERT_TRUE(seg);
  EXPECT_EQ(seg->live_master(true), successor);
  EXPECT_EQ(ctl::kill_master(*seg).message, "shutdown complete, exiting.");
  EXPECT_EQ(wait_signal(successor), SIGTERM);
}

// `kill` sent while an upgrade is under way: the master it signalled hands the instance over
// to a new master (which records itself in the table), then drains and goes. The new master is
// stopped too, and only then is the segment removed. (Before: kill said "shutdown complete"
// once the old master was gone and removed the segment, and the new one served on, out of the
// control shell's reach.)
TEST_P(CtlKill, AMasterHandedOverToDuringTheStopIsStoppedToo) {
  int reported[2];
  ASSERT_EQ(::pipe(reported), 0);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t master = ::fork();
  if (master == 0) {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &term, nullptr);
    balance::Failure failure;
    auto seg = ctl::Segment::create(id_, failure);
    if (!seg) ::_exit(1);
    (void)!::write(ready[1], "r", 1);
    int sig = 0;
    ::sigwait(&term, &sig);  // the SIGTERM came during an upgrade: the successor starts now
    const pid_t successor = ::fork();
    if (successor == 0) {
      ::sigprocmask(SIG_UNBLOCK, &term, nullptr);
      auto adopted = ctl::Segment::adopt(id_, ::dup(seg->fd()), failure);
      if (!adopted) ::_exit(1);
      const pid_t self = ::getpid();
      (void)!::write(reported[1], &self, sizeof self);
      for (;;) ::pause();
    }
    pid_t successor_pid = 0;  // once it serves, this master drains and goes
    (void)!::read(reported[0], &successor_pid, sizeof successor_pid);
    (void)!::write(reported[1], &successor_pid, sizeof successor_pid);  // for the test
    ::_exit(0);
  }
  children_.push_back(master);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  auto seg = attach();
  ASSERT_TRUE(seg);
  const auto outcome = ctl::kill_master(*seg, {5000, 1000, 1000});
  EXPECT_EQ(wait_exit_code(master), 0);
  pid_t successor = 0;
  ASSERT_EQ(::read(reported[0], &successor, sizeof successor), static_cast<ssize_t>(sizeof successor));
  const auto info = ctl::read_process(successor);
  const bool successor_running = info && info->running();
  if (successor_running) ::kill(successor, SIGKILL);  // not our child: reaped by init
  EXPECT_EQ(outcome.message, "shutdown complete, exiting.");
  EXPECT_FALSE(successor_running) << "the new master serves on";
  struct stat st{};
  EXPECT_NE(::stat(path().c_str(), &st), 0);
  for (const int fd : {reported[0], reported[1], ready[0], ready[1]}) ::close(fd);
}

TEST_P(CtlKill, ASecondSigtermComesBeforeSigkill) {
  const pid_t master = fork_master(OnTerm::DieOnSecond);
  auto seg = attach();
  ASSERT_TRUE(seg);
  // The first wait must let the master take the first SIGTERM before the second is sent: two
  // SIGTERMs still pending merge into one (a loaded TSan run did not schedule it within 50 ms).
  const auto outcome = ctl::kill_master(*seg, {1000, 3000, 3000});
  EXPECT_EQ(outcome.message, "shutdown complete, exiting.");
  EXPECT_EQ(wait_exit_code(master), 3);
}

TEST_P(CtlKill, NeverSignalsAProcessThatDoesNotHoldTheSegment) {
  const pid_t bystander = ::fork();  // forked before the segment exists: does not map it
  if (bystander == 0) {
    for (;;) ::pause();
  }
  auto master = create();
  ASSERT_TRUE(master);
  const auto info = ctl::read_process(bystander);
  ASSERT_TRUE(info);
  master->table().header.master_pid.store(bystander);  // a forged header
  master->table().header.master_start_ticks = info->start_ticks;
  auto seg = attach();
  ASSERT_TRUE(seg);
  const auto outcome = ctl::kill_master(*seg, {50, 50, 50});
  EXPECT_EQ(outcome.exit_code, 77);
  EXPECT_NE(outcome.message.find("refusing to signal process"), std::string::npos) << outcome.message;
  EXPECT_TRUE(ctl::same_process_running(bystander, info->start_ticks));
  ::kill(bystander, SIGKILL);
  ::waitpid(bystander, nullptr, 0);
}

TEST_P(CtlKill, NeverSignalsItself) {
  auto master = create();  // this very process is the master
  auto seg = attach();
  ASSERT_TRUE(seg);
  const auto outcome = ctl::kill_master(*seg, {50, 50, 50});
  EXPECT_EQ(outcome.exit_code, 77);
}

TEST_P(CtlKill, AMasterThatDiedMeanwhileIsNoMaster) {
  const pid_t master = fork_master(OnTerm::Die);
  auto seg = attach();
  ASSERT_TRUE(seg);
  ::kill(master, SIGKILL);
  EXPECT_EQ(wait_signal(master), SIGKILL);
  const auto outcome = ctl::kill_master(*seg, {50, 50, 50});
  EXPECT_EQ(outcome.exit_code, 69);
  EXPECT_EQ(outcome.message, "no master process, exiting.");
}

INSTANTIATE_TEST_SUITE_P(Both, CtlKill, ::testing::Values(false, true), ctl::testing::mechanism_name);

TEST(CtlProc, ReadsItselfAndMissesTheDead) {
  const auto self = ctl::read_process(::getpid());
  ASSERT_TRUE(self);
  EXPECT_TRUE(self->running());
  EXPECT_EQ(self->uid, ::getuid());
  EXPECT_EQ(self->start_ticks, ctl::own_start_ticks());
  EXPECT_FALSE(ctl::read_process(0));
  EXPECT_FALSE(ctl::read_process(-1));
  EXPECT_FALSE(ctl::same_process_running(::getpid(), self->start_ticks + 1));
}

TEST(CtlProc, AZombieIsNotRunning) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  // Until reaped the child is a zombie; wait for that state rather than for a fixed time.
  for (int i = 0; i < 5000; ++i) {
    const auto info = ctl::read_process(child);
    if (info && !info->running()) break;
    ::usleep(1000);
  }
  const auto info = ctl::read_process(child);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->running());
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(ctl::read_process(child));
}

}  // namespace
