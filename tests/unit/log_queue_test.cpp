// The log queue (log.h): a sink nobody reads never blocks a thread that logs; the lines that do
// not fit are dropped, counted, and reported in order once the sink drains.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "log/log.h"
#include "log_test_util.h"

namespace balance::log {
namespace {

// Points stderr at a pipe that nobody reads until read_until() is called.
class StderrPipe {
 public:
  StderrPipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) std::abort();
    read_end_ = p[0];
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(p[1], STDERR_FILENO);
    ::close(p[1]);
  }
  ~StderrPipe() {
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    ::close(read_end_);
  }

  // Reads until `done(everything read)` holds, or until nothing came for 30 s (a bound, not a
  // timing assertion: the caller's checks then fail). Returns everything read.
  std::string read_until(const std::function<bool(const std::string&)>& done) {
    while (!done(data_)) {
      pollfd p{read_end_, POLLIN, 0};
      if (::poll(&p, 1, 30000) <= 0) break;
      char buf[65536];
      const ssize_t n = ::read(read_end_, buf, sizeof buf);
      if (n > 0) {
        data_.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    return data_;
  }

 private:
  int read_end_ = -1;
  int saved_ = -1;
  std::string data_;
};

constexpr char kReport[] = " log lines dropped (the log reader was not keeping up)";

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST(LogQueue, AFullSinkNeverBlocksTheProducerAndDropsAreReportedInOrder) {
  StderrPipe sink;
  init(false, false);
  const uint64_t dropped_before = dropped_lines();
  constexpr int kLines = 20000;  // 4 MB: far more than the pipe and the queue hold together
  const std::string body(200, 'x');
  std::atomic<bool> done{false};
  std::promise<void> finished;
  std::thread producer([&] {
    for (int i = 0; i < kLines; ++i) write(Level::Info, "line %d %s", i, body.c_str());
    done = true;
    finished.set_value();
  });
  // Nobody reads the sink meanwhile. The producer must finish on its own: wait for it, bounded.
  const bool on_its_own = finished.get_future().wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  EXPECT_TRUE(on_its_own) << "write() blocked on a full sink";
  if (!done) sink.read_until([&](const std::string&) { return done.load(); });  // unblock it, to join
  producer.join();
  const uint64_t dropped = dropped_lines() - dropped_before;
  EXPECT_GT(dropped, 0u);

  // Reading the sink lets the logger write out the queue, then the report of what it dropped.
  // The last line goes in once the queue is written out (flush()): written while the queue is
  // still full, it would be dropped too (it was, in 1 of a CI run's tries).
  std::string out;
  std::thread reader([&] { out = sink.read_until([](const std::string& text) { return has_line(text, "after the drops"); }); });
  EXPECT_TRUE(flush());
  write(Level::Notice, "after the drops");
  reader.join();
  // Every line is either written, in order, or accounted for by the report right where it is missing.
  int next = 0;
  uint64_t reported = 0;
  size_t start = 0;
  bool after_seen = false;
  while (start < out.size()) {
    const size_t end = out.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    const std::string line = out.substr(start, end - start);
    start = end + 1;
    int n = -1;
    unsigned long long count = 0;
    if (std::sscanf(line.c_str(), "line %d ", &n) == 1) {
      ASSERT_EQ(n, next) << "line out of order or lost without a report";
      ASSERT_EQ(line, "line " + std::to_string(n) + " " + body);
      ++next;
    } else if (std::sscanf(line.c_str(), "balance: %llu ", &count) == 1 && line.find(kReport) != std::string::npos) {
      ASSERT_GT(count, 0u);
      reported += count;
      next += static_cast<int>(count);
    } else {
      ASSERT_EQ(line, "after the drops");
      after_seen = true;
      EXPECT_EQ(start, out.size()) << "the last line";
    }
  }
  EXPECT_TRUE(after_seen);
  EXPECT_EQ(next, kLines);
  EXPECT_EQ(reported, dropped);
  EXPECT_TRUE(flush());
  shutdown();
}

TEST(LogQueue, FlushGivesUpOnASinkThatTakesNothingThenCompletesOnceItDrains) {
  StderrPipe sink;
  init(false, false);
  const std::string body(1000, 'y');
  constexpr int kLines = 200;  // 200 KB: more than the pipe holds, less than the queue
  for (int i = 0; i < kLines; ++i) write(Level::Info, "%d %s", i, body.c_str());
  EXPECT_FALSE(flush());  // the logger is stuck in a write nobody reads: flush() does not wait for ever
  const std::string last = std::to_string(kLines - 1) + " " + body;
  const std::string out = sink.read_until([&](const std::string& text) { return has_line(text, last); });
  EXPECT_TRUE(has_line(out, last));
  EXPECT_EQ(out.find(kReport), std::string::npos);  // nothing was dropped
  EXPECT_TRUE(flush());
  shutdown();
}

// A sink that fails part way through a line (a full disk: a short write, then ENOSPC) leaves that
// line cut short; the next line, once the sink takes lines again, must start a line of its own,
// not be glued onto the cut one (before: "conn client=... group=0 chanconn client=...").
// RLIMIT_FSIZE stands in for the full disk: the write past it is cut short, the next fails (EFBIG).
TEST(LogQueue, ALineCutShortByAFailingSinkDoesNotSwallowTheNextOne) {
  testing::FullDisk disk(STDERR_FILENO);
  init(false, false);

  write(Level::Info, "first");
  ASSERT_TRUE(flush());
  const uint64_t lost_before = lost_lines();
  ASSERT_TRUE(disk.fill_at(6 + 10));  // "first\n" and 10 bytes of the next line
  write(Level::Info, "cut short by the full sink");
  write(Level::Info, "lost to the full sink");
  ASSERT_TRUE(flush());
  EXPECT_EQ(lost_lines() - lost_before, 2u);  // balance_log_lines_lost_total: both count
  ASSERT_TRUE(disk.room_again());
  write(Level::Info, "after");
  ASSERT_TRUE(flush());
  shutdown();
  const std::string out = disk.contents();
  EXPECT_EQ(out, "first\ncut short \nafter\n");
  EXPECT_EQ(lost_lines() - lost_before, 2u);  // the line that ends the cut one and "after" came whole
}

TEST(LogQueue, DirectBeforeInitAndAfterShutdown) {
  // Without the logger thread (start-up, before any fork; after shutdown) a line is written at once.
  shutdown();
  StderrPipe sink;
  write(Level::Error, "direct %d", 1);
  EXPECT_EQ(sink.read_until([](const std::string& text) { return !text.empty(); }), "direct 1\n");
}

}  // namespace
}  // namespace balance::log
