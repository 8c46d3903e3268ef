// A fixture for tests that create real segments: a private run directory and instance names no
// other test (or real balance) uses.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "ctl/names.h"
#include "ctl/segment.h"

namespace balance::ctl::testing {

class SegmentFixture : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/balance-ctl-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    rundir_ = dir_template;
    ::setenv("BALANCE_RUNDIR", rundir_.c_str(), 1);
    static std::atomic<int> counter{0};
    id_.port = 4242;
    id_.bind_text = "ctl-unit-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    id_.use_mmap = GetParam();
  }
  void TearDown() override {
    if (!id_.use_mmap) ::shm_unlink(("/" + segment_stem(id_.port, id_.bind_text)).c_str());
    std::filesystem::remove_all(rundir_);
    ::unsetenv("BALANCE_RUNDIR");
  }
  // The file behind the segment, for poking at it.
  std::string path() const {
    const std::string stem = segment_stem(id_.port, id_.bind_text);
    return id_.use_mmap ? rundir_ + "/" + stem : "/dev/shm/" + stem;
  }
  std::unique_ptr<Segment> create() {
    Failure failure;
    auto seg = Segment::create(id_, failure);
    EXPECT_TRUE(seg) << failure.message;
    return seg;
  }
  Failure attach_failure() {
    Failure failure;
    auto seg = Segment::attach(id_, failure);
    EXPECT_FALSE(seg);
    return failure;
  }

  std::string rundir_;
  InstanceId id_;
};

inline std::string mechanism_name(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "MappedFile" : "SharedMemory";
}

}  // namespace balance::ctl::testing
