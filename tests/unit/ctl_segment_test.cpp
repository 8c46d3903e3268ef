// Tests of the control segment (src/ctl/segment.h): naming, creation, attaching, stale, foreign
// and corrupt segments, the writers' lock; both POSIX shm and the -M mapped file.
#include "ctl/segment.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include "ctl/names.h"
#include "ctl/proc.h"
#include "ctl_segment_fixture.h"
#include "ctl_test_util.h"

namespace ctl = balance::ctl;
namespace core = balance::core;
using ctl::testing::SegmentFixture;

namespace {

using CtlSegment = SegmentFixture;

TEST_P(CtlSegment, AttachSeesTheMastersTable) {
  auto master = create();
  ASSERT_TRUE(master);
  master->table().append_channel(0, ctl::testing::endpoint("127.0.0.1", 80), 3, true);
  balance::Failure failure;
  auto client = ctl::Segment::attach(id_, failure);
  ASSERT_TRUE(client) << failure.message;
  EXPECT_EQ(client->table().channel_count(0), 1u);
  EXPECT_EQ(client->table().groups[0].channels[0].maxc.load(), 3u);
  EXPECT_EQ(client->live_master(false), ::getpid());
  EXPECT_EQ(client->live_master(true), ::getpid());
  EXPECT_EQ(client->owner(), ::geteuid());
  client->table().groups[0].channels[0].enabled.store(0);  // shared, not copied
  EXPECT_EQ(master->table().groups[0].channels[0].enabled.load(), 0u);
}

TEST_P(CtlSegment, IsCreatedMode0600AndOwnedByUs) {
  auto master = create();
  struct stat st{};
  ASSERT_EQ(::stat(path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_size, static_cast<off_t>(sizeof(core::Table)));
}

TEST_P(CtlSegment, NoSegmentMeansNoMaster) {
  const auto failure = attach_failure();
  EXPECT_EQ(failure.exit_code, 69);
  EXPECT_EQ(failure.message, "no master process, exiting.");
}

TEST_P(CtlSegment, ADeadMastersSegmentIsReportedAndReplaced) {
  create().reset();  // the master dies without unlinking: its lock goes with it
  struct stat st{};
  ASSERT_EQ(::stat(path().c_str(), &st), 0);
  EXPECT_EQ(attach_failure().message, "no master process, exiting.");
  auto master = create();
  ASSERT_TRUE(master);
  balance::Failure failure;
  EXPECT_TRUE(ctl::Segment::attach(id_, failure)) << failure.message;
}

TEST_P(CtlSegment, AReusedOrForgedPidIsNoMaster) {
  auto master = create();
  core::Header& h = master->table().header;
  h.master_start_ticks += 1;  // same pid, another process
  EXPECT_EQ(attach_failure().exit_code, 69);
  h.master_start_ticks -= 1;
  h.master_pid.store(0);
  EXPECT_EQ(attach_failure().exit_code, 69);
  h.master_pid.store(1);
  EXPECT_EQ(attach_failure().exit_code, 69);
  h.master_pid.store(-5);
  EXPECT_EQ(attach_failure().exit_code, 69);
  h.master_pid.store(INT32_MAX);
  EXPECT_EQ(attach_failure().exit_code, 69);
}

// An upgrade's new master records itself (start ticks, then pid) while clients read the header:
// a client must see the old master or the new one, both alive, never neither. Here the header
// flips between this process and a live child as fast as publish_master() writes it. (Before:
// the pid was read, /proc looked at, and only then the ticks: about a third of the reads paired
// one master's pid with the other's ticks, and `-i` said "PID 0", a command "no master".)
TEST_P(CtlSegment, AMasterBeingHandedOverIsNeverTakenForGone) {
  auto master = create();
  ASSERT_TRUE(master);
  const pid_t other = ::fork();
  if (other == 0) {
    for (;;) ::pause();
  }
  const auto other_info = ctl::read_process(other);
  ASSERT_TRUE(other_info);
  balance::Failure failure;
  auto client = ctl::Segment::attach(id_, failure);
  ASSERT_TRUE(client) << failure.message;
  core::Header& h = master->table().header;
  const ctl::Segment::MasterIdentity identities[2] = {{::getpid(), ctl::own_start_ticks()},
                                                      {other, other_info->start_ticks}};
  std::atomic<bool> done{false};
  // Writes as publish_master() does, but paused between the two stores, as a master preempted
  // there is: half of the time the header holds one master's pid and the other's start ticks.
  // (Before the seqlock, 1,000 and more of the 2,000 reads took that pair for no master.)
  std::thread writer([&] {
    for (unsigned i = 0; !done.load(); ++i) {
      const auto& id = identities[i % 2];
      h.flags.fetch_add(core::kMasterSeqOne, std::memory_order_relaxed);
      std::atomic_ref<uint64_t>(h.master_start_ticks).store(id.start_ticks, std::memory_order_release);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      h.master_pid.store(id.pid, std::memory_order_release);
      h.flags.fetch_add(core::kMasterSeqOne, std::memory_order_release);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  int gone = 0;
  for (int i = 0; i < 2000; ++i) {
    const pid_t pid = client->live_master(false);
    if (pid != ::getpid() && pid != other) ++gone;
  }
  done.store(true);
  writer.join();
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
  EXPECT_EQ(gone, 0) << "of 2000 reads";
}

TEST_P(CtlSegment, ASecondMasterOnTheSameInstanceIsRefused) {
  auto master = create();
  balance::Failure failure;
  EXPECT_FALSE(ctl::Segment::create(id_, failure));
  EXPECT_EQ(failure.exit_code, 69);
  EXPECT_NE(failure.message.find("already running"), std::string::npos) << failure.message;
  EXPECT_TRUE(ctl::Segment::attach(id_, failure));  // the first one is untouched
}

TEST_P(CtlSegment, BadMagicLayoutOrSizeIsAClearError) {
  auto master = create();
  core::Header& h = master->table().header;
  std::memcpy(h.magic, "GARBAGE!", 8);
  auto failure = attach_failure();
  EXPECT_EQ(failure.exit_code, 65);
  EXPECT_EQ(failure.message,
            "invalid control segment of balance on " + ctl::instance_label(id_.port, id_.bind_text) +
                ": bad magic, exiting.");
  std::memcpy(h.magic, core::kMagic, 8);
  h.layout_version = 99;
  failure = attach_failure();
  EXPECT_EQ(failure.exit_code, 65);
  EXPECT_NE(failure.message.find("layout version 99, expected 1"), std::string::npos) << failure.message;
  h.layout_version = core::kLayoutVersion;
  h.max_channels = 1000000;
  EXPECT_EQ(attach_failure().exit_code, 65);
  h.max_channels = core::kMaxChannels;
  std::memset(h.magic, 0, sizeof h.magic);  // not written yet: a master still starting
  EXPECT_EQ(attach_failure().exit_code, 69);
}

TEST_P(CtlSegment, WrongFileSizeIsAClearError) {
  auto master = create();
  ASSERT_EQ(::truncate(path().c_str(), sizeof(core::Table) + 4096), 0);
  const auto failure = attach_failure();
  EXPECT_EQ(failure.exit_code, 65);
  EXPECT_NE(failure.message.find("size"), std::string::npos) << failure.message;
}

// Runs `attach` as user nobody in a child; returns its exit code (the Failure's code).
int attach_as_nobody(const ctl::InstanceId& id) {
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(100);
    }
    balance::Failure failure;
    auto seg = ctl::Segment::attach(id, failure);
    const bool message_ok = failure.message.rfind("permission denied: balance on ", 0) == 0 &&
                            failure.message.find("belongs to another user, exiting.") != std::string::npos;
    ::_exit(seg ? 0 : (message_ok ? failure.exit_code : 101));
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_P(CtlSegment, AnotherUserIsRefusedWithAPermissionError) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  auto master = create();
  EXPECT_EQ(attach_as_nobody(id_), 77);
  // Even a segment made readable to all (or a run directory opened up) is not theirs.
  ASSERT_EQ(::chmod(path().c_str(), 0666), 0);
  ASSERT_EQ(::chmod(rundir_.c_str(), 0755), 0);
  EXPECT_EQ(attach_as_nobody(id_), 77);
}

TEST_P(CtlSegment, UnlinkLeavesANewerSegmentAlone) {
  auto first = create();
  first->unlink();
  struct stat st{};
  EXPECT_NE(::stat(path().c_str(), &st), 0);
  auto second = create();  // the name is free again, though `first` still runs
  ASSERT_TRUE(second);
  first->unlink();  // must not remove `second`
  balance::Failure failure;
  EXPECT_TRUE(ctl::Segment::attach(id_, failure)) << failure.message;
  second->unlink();
  second->unlink();  // idempotent
  EXPECT_EQ(attach_failure().exit_code, 69);
}

TEST_P(CtlSegment, WritersExcludeEachOtherAcrossOpenings) {
  auto master = create();
  balance::Failure failure;
  auto a = ctl::Segment::attach(id_, failure);
  auto b = ctl::Segment::attach(id_, failure);
  ASSERT_TRUE(a && b);
  {
    ctl::Segment::WriteLock la(*a, 0);
    ASSERT_TRUE(la.held());
    ctl::Segment::WriteLock lb(*b, 30);
    EXPECT_FALSE(lb.held());
  }
  ctl::Segment::WriteLock lb(*b, 0);
  EXPECT_TRUE(lb.held());
}

TEST_P(CtlSegment, AdoptTakesOverTheSegmentAndItsLock) {
  auto old_master = create();
  old_master->table().append_channel(0, ctl::testing::endpoint("127.0.0.1", 80), 0, true);
  balance::Failure failure;
  auto new_master = ctl::Segment::adopt(id_, ::dup(old_master->fd()), failure);
  ASSERT_TRUE(new_master) << failure.message;
  EXPECT_EQ(new_master->table().channel_count(0), 1u);  // the same table, not a copy
  old_master.reset();  // the predecessor exits: the lock lives on in the shared description
  auto client = ctl::Segment::attach(id_, failure);
  ASSERT_TRUE(client) << failure.message;
  EXPECT_EQ(client->live_master(true), ::getpid());
}

TEST_P(CtlSegment, AdoptRefusesWhatIsNotASegment) {
  balance::Failure failure;
  EXPECT_FALSE(ctl::Segment::adopt(id_, -1, failure));
  EXPECT_EQ(failure.exit_code, 71);
  EXPECT_FALSE(ctl::Segment::adopt(id_, ::open("/dev/null", O_RDWR | O_CLOEXEC), failure));
  EXPECT_EQ(failure.exit_code, 65);
  auto master = create();
  std::memcpy(master->table().header.magic, "GARBAGE!", 8);
  EXPECT_FALSE(ctl::Segment::adopt(id_, ::dup(master->fd()), failure));
  EXPECT_EQ(failure.exit_code, 65);
  EXPECT_NE(failure.message.find("bad magic"), std::string::npos) << failure.message;
}

TEST_P(CtlSegment, PublishMasterRecordsTheCaller) {
  auto master = create();
  master->table().header.master_pid.store(12345);
  master->publish_master();
  EXPECT_EQ(master->table().header.master_pid.load(), ::getpid());
  EXPECT_NE(master->table().header.master_start_ticks, 0u);
}

INSTANTIATE_TEST_SUITE_P(Both, CtlSegment, ::testing::Values(false, true), ctl::testing::mechanism_name);

class CtlMappedFile : public SegmentFixture {};

TEST_P(CtlMappedFile, ASymlinkInPlaceOfTheFileIsRefused) {
  ASSERT_EQ(::symlink("/etc/passwd", path().c_str()), 0);
  const auto failure = attach_failure();
  EXPECT_EQ(failure.exit_code, 65);
  EXPECT_NE(failure.message.find("symbolic link"), std::string::npos) << failure.message;
  auto master = create();  // the master replaces the link, it never writes through it
  ASSERT_TRUE(master);
  struct stat st{};
  ASSERT_EQ(::lstat(path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_P(CtlMappedFile, ARunDirectoryOthersCanWriteIsRefused) {
  ASSERT_EQ(::chmod(rundir_.c_str(), 0777), 0);
  balance::Failure failure;
  EXPECT_FALSE(ctl::Segment::create(id_, failure));
  EXPECT_EQ(failure.exit_code, 73);
  EXPECT_NE(failure.message.find("unsafe run directory"), std::string::npos) << failure.message;
}

TEST_P(CtlMappedFile, AMissingRunDirectoryIsCreated0700) {
  const std::string sub = rundir_ + "/sub";
  ::setenv("BALANCE_RUNDIR", sub.c_str(), 1);
  auto master = create();
  ASSERT_TRUE(master);
  struct stat st{};
  ASSERT_EQ(::stat(sub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

INSTANTIATE_TEST_SUITE_P(Only, CtlMappedFile, ::testing::Values(true), ctl::testing::mechanism_name);

TEST(CtlNames, RunDirectoryFollowsTheEnvironmentThenTheUser) {
  ::setenv("BALANCE_RUNDIR", "/some/where", 1);
  EXPECT_EQ(ctl::run_directory(), "/some/where");
  ::unsetenv("BALANCE_RUNDIR");
  if (::geteuid() == 0) {
    EXPECT_EQ(ctl::run_directory(), "/var/run/balance");
  } else {
    EXPECT_NE(ctl::run_directory().find("balance"), std::string::npos);
  }
}

TEST(CtlNames, StemsAreSafeAndDistinct) {
  EXPECT_EQ(ctl::segment_stem(8080, ""), "balance.8080");
  EXPECT_EQ(ctl::segment_stem(8080, "127.0.0.1"), "balance.8080.127.0.0.1");
  EXPECT_EQ(ctl::segment_stem(80, "::1"), "balance.80._3A_3A1");
  EXPECT_EQ(ctl::segment_stem(80, "../../etc"), "balance.80..._2F.._2Fetc");
  EXPECT_NE(ctl::segment_stem(80, "a_b"), ctl::segment_stem(80, "a:b"));
  const std::string long_a(300, 'a');
  const std::string long_b = std::string(299, 'a') + "b";
  EXPECT_LT(ctl::segment_stem(80, long_a).size(), 200u);
  EXPECT_NE(ctl::segment_stem(80, long_a), ctl::segment_stem(80, long_b));
  EXPECT_EQ(ctl::segment_stem(80, "x/y").find('/'), std::string::npos);
  EXPECT_EQ(ctl::instance_label(80, ""), "port 80");
  EXPECT_EQ(ctl::instance_label(80, "::1"), "::1 port 80");
}

}  // namespace
