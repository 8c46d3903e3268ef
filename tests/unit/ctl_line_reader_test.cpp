// Tests of the bounded line splitter behind the piped shell (src/ctl/line_reader.h).
#include "ctl/line_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace ctl = balance::ctl;

namespace {

// A reader over a pipe that already holds `input` and is closed for writing.
class Piped {
 public:
  explicit Piped(const std::string& input, size_t max = 16) {
    EXPECT_EQ(::pipe(fds_), 0);
    writer_ = std::thread([this, input] {
      size_t done = 0;
      while (done < input.size()) {
        const ssize_t n = ::write(fds_[1], input.data() + done, input.size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      ::close(fds_[1]);
    });
    reader_ = std::make_unique<ctl::LineReader>(fds_[0], max);
  }
  ~Piped() {
    writer_.join();
    ::close(fds_[0]);
  }
  ctl::InputStatus next(std::string& line) { return reader_->next(line); }

 private:
  int fds_[2];
  std::thread writer_;
  std::unique_ptr<ctl::LineReader> reader_;
};

TEST(CtlLineReader, SplitsLinesAndKeepsALastLineWithoutNewline) {
  Piped p("show\n\nmaxc 1 2\r\nquit");
  std::string line;
  ASSERT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(line, "show");
  ASSERT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(line, "");
  ASSERT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(line, "maxc 1 2\r");
  ASSERT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(line, "quit");
  EXPECT_EQ(p.next(line), ctl::InputStatus::End);
  EXPECT_EQ(p.next(line), ctl::InputStatus::End);
}

TEST(CtlLineReader, DropsOverlongLinesAndGoesOn) {
  Piped p(std::string(100000, 'x') + "\nshow\n" + std::string(17, 'y') + "\n" + std::string(16, 'z') + "\n");
  std::string line;
  EXPECT_EQ(p.next(line), ctl::InputStatus::TooLong);
  ASSERT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(line, "show");
  EXPECT_EQ(p.next(line), ctl::InputStatus::TooLong);
  ASSERT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(line, std::string(16, 'z'));
  EXPECT_EQ(p.next(line), ctl::InputStatus::End);
}

TEST(CtlLineReader, AnOverlongLastLineWithoutNewline) {
  Piped p("ok\n" + std::string(50, 'x'));
  std::string line;
  EXPECT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(p.next(line), ctl::InputStatus::TooLong);
  EXPECT_EQ(p.next(line), ctl::InputStatus::End);
}

// The tail of an overlong last line, read after the bound was passed, is part of that line: it
// must not come back as a line of its own (here it would run "kill").
TEST(CtlLineReader, TheTailOfAnOverlongLastLineIsDroppedWithIt) {
  Piped p(std::string(4096, 'x') + "kill");
  std::string line;
  EXPECT_EQ(p.next(line), ctl::InputStatus::TooLong);
  EXPECT_EQ(p.next(line), ctl::InputStatus::End) << "came back as a line: " << line;
}

TEST(CtlLineReader, NulBytesPassThrough) {
  Piped p(std::string("sh\0ow\n", 6));
  std::string line;
  ASSERT_EQ(p.next(line), ctl::InputStatus::Line);
  EXPECT_EQ(line, std::string("sh\0ow", 5));
}

TEST(CtlLineReader, EmptyInputEndsAtOnce) {
  Piped p("");
  std::string line;
  EXPECT_EQ(p.next(line), ctl::InputStatus::End);
}

// The system call thread `tid` of this process is blocked in, or -1 (running, or gone).
long blocked_in(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
  std::string first;
  if (!(in >> first) || first == "running") return -1;
  try {
    return std::stol(first);
  } catch (...) {
    return -1;
  }
}

bool is_a_wait(long call) {
#ifdef SYS_poll
  if (call == SYS_poll) return true;
#endif
  return call == SYS_ppoll || call == SYS_read;
}

// Standard input shared with a program that left it non-blocking (O_NONBLOCK belongs to the open
// file, not the descriptor): no input yet is not the end of it. The line written once the reader
// waits must come back.
TEST(CtlLineReader, ANonBlockingInputIsWaitedFor) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
  ctl::LineReader reader(fds[0], 16);
  std::atomic<pid_t> tid{0};
  std::atomic<bool> returned{false};
  ctl::InputStatus status = ctl::InputStatus::End;
  std::string line;
  std::thread t([&] {
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    status = reader.next(line);
    returned = true;
  });
  // Until the reader waits in the kernel, or has returned: no data was written, so a reader
  // that returns now takes the empty pipe for the end of input. Bounded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!returned && (tid == 0 || !is_a_wait(blocked_in(tid))) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(::write(fds[1], "show\n", 5), 5);
  ::close(fds[1]);
  t.join();
  ::close(fds[0]);
  ASSERT_EQ(status, ctl::InputStatus::Line) << "the empty non-blocking pipe was taken for the end of input";
  EXPECT_EQ(line, "show");
}

}  // namespace
