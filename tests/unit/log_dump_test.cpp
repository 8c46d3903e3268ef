// The -p packet dump format (COMPAT.md, "Data transfer") and the log sink: exact text, the
// 80-column wrap, and whole lines/blocks when several threads write at once.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "log/dump.h"
#include "log/log.h"
#include "log_test_util.h"

namespace balance::log {
namespace {

std::string dump_of(Direction dir, const std::string& bytes) {
  return format_dump(dir, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

// Captures what is written to `fd` (1 or 2) between construction and finish().
class FdCapture {
 public:
  explicit FdCapture(int fd) : fd_(fd) {
    if (fd == STDOUT_FILENO) std::fflush(stdout);
    if (fd == STDERR_FILENO) std::fflush(stderr);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) std::abort();
    read_end_ = p[0];
    saved_ = ::dup(fd);
    ::dup2(p[1], fd);
    ::close(p[1]);
    reader_ = std::thread([this] {
      char buf[65536];
      for (;;) {
        const ssize_t n = ::read(read_end_, buf, sizeof buf);
        if (n > 0) {
          data_.append(buf, static_cast<size_t>(n));
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else {
          break;
        }
      }
    });
  }
  ~FdCapture() { finish(); }

  // Restores the descriptor and returns everything written to it.
  std::string finish() {
    if (saved_ >= 0) {
      flush();  // log lines go out from the logger thread
      ::dup2(saved_, fd_);  // drops the last write end: the reader sees end of file
      ::close(saved_);
      saved_ = -1;
      reader_.join();
      ::close(read_end_);
    }
    return data_;
  }

 private:
  int fd_;
  int saved_ = -1;
  int read_end_ = -1;
  std::thread reader_;
  std::string data_;
};

// Reverses the dump encoding (for property checks): "\\" -> '\', "\XX" -> byte, line breaks dropped.
std::string undump(const std::string& body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\n') continue;
    if (body[i] != '\\') {
      out += body[i];
    } else if (body[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else {
      out += static_cast<char>(std::stoi(body.substr(i + 1, 2), nullptr, 16));
      i += 2;
    }
  }
  return out;
}

TEST(DumpFormat, CompatExample) {
  // The COMPAT.md example, with the true byte count in the header.
  const std::string bytes = "hello\\world\x01\x7F\xFF\tend\nline2";
  ASSERT_EQ(bytes.size(), 24u);
  EXPECT_EQ(dump_of(Direction::FromClient, bytes),
            "-> 24\n"
            "hello\\\\world\\01\\7F\\FF\\09end\\0A\n"
            "line2\n");
}

TEST(DumpFormat, ServerDirectionHeader) {
  // Data from the server is headed "-< N".
  EXPECT_EQ(dump_of(Direction::FromServer, "ok"), "-< 2\nok\n");
}

TEST(DumpFormat, EndOfStreamIsZeroAndAnEmptyLine) {
  // End of stream: "-> 0" followed by an empty line, in both directions.
  EXPECT_EQ(format_dump(Direction::FromClient, nullptr, 0), "-> 0\n\n");
  EXPECT_EQ(format_dump(Direction::FromServer, nullptr, 0), "-< 0\n\n");
}

TEST(DumpFormat, WrapsOnlyAfterMoreThan80Columns) {
  // 80 columns stay on one line; the 81st column triggers the break right after it.
  const std::string a80(80, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, a80), "-> 80\n" + a80 + "\n");
  const std::string a81(81, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, a81), "-> 81\n" + a81 + "\n\n");
  const std::string a82(82, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, a82), "-> 82\n" + a81 + "\na\n");
  const std::string a163(163, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, a163), "-> 163\n" + a81 + "\n" + a81 + "\na\n");
}

TEST(DumpFormat, HexBytesCountThreeColumns) {
  // 26 hex bytes are 78 columns; the 27th makes 81 and breaks the line after it.
  const std::string ones26(26, '\x01');
  std::string line26;
  for (int i = 0; i < 26; ++i) line26 += "\\01";
  EXPECT_EQ(dump_of(Direction::FromClient, ones26), "-> 26\n" + line26 + "\n");
  EXPECT_EQ(dump_of(Direction::FromClient, ones26 + '\x01' + 'z'), "-> 28\n" + line26 + "\\01\nz\n");
  // 79 columns of text then a hex byte: 82 columns, then the break.
  EXPECT_EQ(dump_of(Direction::FromClient, std::string(79, 'a') + "\x02" + "b"),
            "-> 81\n" + std::string(79, 'a') + "\\02\nb\n");
}

TEST(DumpFormat, BackslashAtTheWrapBoundary) {
  // A backslash is two columns: at column 79-80 no break, at 80-81 a break after it.
  const std::string a78(78, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, a78 + "\\x"), "-> 80\n" + a78 + "\\\\x\n\n");
  const std::string a79(79, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, a79 + "\\x"), "-> 81\n" + a79 + "\\\\\nx\n");
  const std::string a80(80, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, a80 + "\\"), "-> 81\n" + a80 + "\\\\\n\n");
}

TEST(DumpFormat, NewlineRestartsTheColumnCount) {
  // After \0A the line restarts, so 80 more columns fit; a newline at the wrap is one break.
  const std::string a80(80, 'a');
  EXPECT_EQ(dump_of(Direction::FromClient, "\n" + a80), "-> 81\n\\0A\n" + a80 + "\n");
  EXPECT_EQ(dump_of(Direction::FromClient, std::string(78, 'a') + "\n" + "b"),
            "-> 80\n" + std::string(78, 'a') + "\\0A\nb\n");
  EXPECT_EQ(dump_of(Direction::FromClient, "\n\n"), "-> 2\n\\0A\n\\0A\n\n");
  EXPECT_EQ(dump_of(Direction::FromClient, "\r\n"), "-> 2\n\\0D\\0A\n\n");
}

TEST(DumpFormat, AllByteValues) {
  // Every byte 0..255: printables as is (backslash doubled), the rest \XX; round-trips; wraps right.
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes += static_cast<char>(b);
  const std::string out = dump_of(Direction::FromServer, bytes);
  ASSERT_EQ(out.rfind("-< 256\n", 0), 0u);
  const std::string body = out.substr(7);
  ASSERT_FALSE(body.empty());
  EXPECT_EQ(body.back(), '\n');
  EXPECT_EQ(undump(body), bytes);
  EXPECT_EQ(body.rfind("\\00\\01\\02\\03\\04\\05\\06\\07\\08\\09\\0A\n\\0B", 0), 0u);
  // 0x0B..0x1F end at column 63, so the printables wrap after '1' (column 81) and after \7F.
  EXPECT_NE(body.find("\\1F !\"#$%&'()*+,-./01\n23456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`"
                      "abcdefghijklmnopqrstuvwxyz{|}~\\7F\n\\80"),
            std::string::npos);
  EXPECT_NE(body.find("\\FD\\FE\\FF\n"), std::string::npos);
  for (int b = 0x80; b < 0x100; ++b) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "\\%02X", b);
    EXPECT_NE(body.find(hex), std::string::npos) << hex;
  }
  // Each line ends after \0A, after passing 80 columns, or at the end of the block.
  size_t start = 0;
  const size_t last_line = body.rfind('\n', body.size() - 2) + 1;
  while (start < body.size()) {
    const size_t end = body.find('\n', start);
    const std::string line = body.substr(start, end - start);
    EXPECT_LE(line.size(), 83u) << line;
    if (start < last_line) {
      const bool newline_end = line.size() >= 3 && line.compare(line.size() - 3, 3, "\\0A") == 0;
      EXPECT_TRUE(newline_end || line.size() > 80) << line;
    }
    start = end + 1;
  }
}

TEST(DumpWrite, WritesTheFormattedBlockToStdout) {
  // dump() writes exactly format_dump() to stdout.
  FdCapture cap(STDOUT_FILENO);
  const std::string bytes = "GET / HTTP/1.0\r\n\r\n";
  dump(Direction::FromClient, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  dump(Direction::FromServer, nullptr, 0);
  EXPECT_EQ(cap.finish(), dump_of(Direction::FromClient, bytes) + "-< 0\n\n");
}

TEST(DumpWrite, ConcurrentBlocksNeverInterleave) {
  // Blocks dumped from several threads at once come out whole, each one contiguous.
  constexpr int kThreads = 4;
  constexpr int kBlocks = 200;
  std::vector<std::string> payload, expected;
  for (int t = 0; t < kThreads; ++t) {
    payload.push_back(std::string(700 + 13 * t, static_cast<char>('A' + t)) + "\n\x01");
    expected.push_back(dump_of(t % 2 ? Direction::FromServer : Direction::FromClient, payload.back()));
  }
  FdCapture cap(STDOUT_FILENO);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const auto* p = reinterpret_cast<const unsigned char*>(payload[t].data());
      for (int i = 0; i < kBlocks; ++i) dump(t % 2 ? Direction::FromServer : Direction::FromClient, p, payload[t].size());
    });
  }
  for (std::thread& th : threads) th.join();
  const std::string out = cap.finish();
  std::vector<int> seen(kThreads, 0);
  size_t pos = 0;
  while (pos < out.size()) {
    bool matched = false;
    for (int t = 0; t < kThreads && !matched; ++t) {
      if (out.compare(pos, expected[t].size(), expected[t]) == 0) {
        pos += expected[t].size();
        ++seen[t];
        matched = true;
      }
    }
    ASSERT_TRUE(matched) << "interleaved output at byte " << pos;
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(seen[t], kBlocks);
}

TEST(DumpWrite, LogLinesNeverLandInsideABlockWhenStderrIsStdout) {
  // `balance -fpd ... 2>&1 | less`: stdout and stderr are one pipe, where a write larger than
  // PIPE_BUF is not atomic. A log line (here from the logger thread) must come between dump
  // blocks, never inside one (before: "...\B3B\D9\CE\BCW\C5\client 127.0.0.1:58366: trying ...").
  const std::string payload(20000, '\x01');  // a block of 60,000 bytes, far over PIPE_BUF
  const std::string block = dump_of(Direction::FromServer, payload);
  constexpr int kBlocks = 200;  // 12 MB
  constexpr int kMaxLines = 1000000;
  FdCapture cap(STDOUT_FILENO);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ::dup2(STDOUT_FILENO, STDERR_FILENO);
  init(false, false);  // (at start, with the descriptors as they are then)
  std::atomic<bool> dumped{false};
  std::thread dumper([&] {
    const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
    for (int i = 0; i < kBlocks; ++i) dump(Direction::FromServer, p, payload.size());
    dumped = true;
  });
  int logged = 0;  // one line at a time, for as long as the dump goes on (no line dropped)
  for (; logged < kMaxLines && !dumped; ++logged) {
    write(Level::Notice, "log line %d", logged);
    if (!flush()) {
      ADD_FAILURE() << "the logger is stuck";
      break;
    }
  }
  dumper.join();
  ASSERT_TRUE(flush());
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  init(false, false);
  const std::string out = cap.finish();
  int blocks = 0;
  int lines = 0;
  size_t pos = 0;
  while (pos < out.size()) {
    if (out.compare(pos, block.size(), block) == 0) {
      pos += block.size();
      ++blocks;
      continue;
    }
    const std::string line = "log line " + std::to_string(lines) + "\n";
    ASSERT_EQ(out.compare(pos, line.size(), line), 0) << "a log line inside a dump block, at byte " << pos << ": "
                                                      << out.substr(pos, 60);
    pos += line.size();
    ++lines;
  }
  EXPECT_EQ(blocks, kBlocks);
  EXPECT_EQ(lines, logged);
}

TEST(DumpWrite, ABlockCutShortByAFailingStdoutDoesNotSwallowTheNextOne) {
  // stdout on a full disk cuts a block short (a short write, then ENOSPC); once there is space
  // again, the next block starts on a line of its own, its header not glued onto the cut data.
  // RLIMIT_FSIZE stands in for the full disk.
  testing::FullDisk disk(STDOUT_FILENO);
  const std::string bytes(20, 'a');
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  ASSERT_TRUE(disk.fill_at(10));  // "-> 20\n" and 4 bytes of data
  dump(Direction::FromClient, p, bytes.size());
  dump(Direction::FromClient, p, bytes.size());  // lost: no space at all
  ASSERT_TRUE(disk.room_again());
  dump(Direction::FromServer, p, 2);
  const std::string out = disk.contents();
  EXPECT_EQ(out, "-> 20\naaaa\n-< 2\naa\n");
}

TEST(LogWrite, ForegroundLinesOnStderr) {
  // In the foreground each message is one line on stderr; a trailing newline is not doubled.
  init(false, false);
  FdCapture cap(STDERR_FILENO);
  write(Level::Error, "invalid port [%s], exiting.", "x");
  write(Level::Notice, "line with newline\n");
  write(Level::Info, "%d%%", 5);
  EXPECT_EQ(cap.finish(), "invalid port [x], exiting.\nline with newline\n5%\n");
}

TEST(LogWrite, DebugOnlyWithDashD) {
  // Debug messages appear only when debug is on; BALANCE_DEBUG skips its arguments otherwise.
  init(false, false);
  EXPECT_FALSE(debug_enabled());
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  {
    FdCapture cap(STDERR_FILENO);
    write(Level::Debug, "hidden");
    BALANCE_DEBUG("hidden %d", count());
    EXPECT_EQ(cap.finish(), "");
  }
  EXPECT_EQ(evaluated, 0);
  init(false, true);
  EXPECT_TRUE(debug_enabled());
  {
    FdCapture cap(STDERR_FILENO);
    BALANCE_DEBUG("shown %d", count());
    EXPECT_EQ(cap.finish(), "shown 1\n");
  }
  init(false, false);
}

TEST(LogWrite, LongMessagesAndErrnoPreserved) {
  // A message longer than the internal buffer comes out whole; errno survives a log call.
  init(false, false);
  const std::string big(20000, 'z');
  FdCapture cap(STDERR_FILENO);
  errno = ECONNREFUSED;
  write(Level::Warning, "%s", big.c_str());
  EXPECT_EQ(errno, ECONNREFUSED);
  EXPECT_EQ(cap.finish(), big + "\n");
}

TEST(LogWrite, ConcurrentLinesNeverInterleave) {
  // Lines logged from several threads at once come out whole.
  init(false, false);
  constexpr int kThreads = 4;
  constexpr int kLines = 200;  // 0.8 MB: less than the queue holds, so no line is dropped
  FdCapture cap(STDERR_FILENO);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      const std::string body(1000, static_cast<char>('a' + t));
      for (int i = 0; i < kLines; ++i) write(Level::Notice, "%d:%s", t, body.c_str());
    });
  }
  for (std::thread& th : threads) th.join();
  const std::string out = cap.finish();
  int lines = 0;
  size_t start = 0;
  while (start < out.size()) {
    const size_t end = out.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    const std::string line = out.substr(start, end - start);
    ASSERT_EQ(line.size(), 1002u);
    const int t = line[0] - '0';
    ASSERT_TRUE(t >= 0 && t < kThreads);
    EXPECT_EQ(line.substr(2), std::string(1000, static_cast<char>('a' + t)));
    ++lines;
    start = end + 1;
  }
  EXPECT_EQ(lines, kThreads * kLines);
}

}  // namespace
}  // namespace balance::log
