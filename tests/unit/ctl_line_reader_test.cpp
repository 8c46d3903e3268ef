// Tests of the bounded line splitter behind the piped shell (src/ctl/line_reader.h).
#include "ctl/line_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

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

}  // namespace
