#include "log/log.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

namespace balance::log {

namespace {

std::atomic<bool> g_syslog{false};
std::atomic<bool> g_debug{false};
std::mutex g_mutex;  // serializes direct (not queued) lines and openlog/closelog

int syslog_priority(Level level) {
  switch (level) {
    case Level::Error: return LOG_ERR;
    case Level::Warning: return LOG_WARNING;
    case Level::Notice: return LOG_NOTICE;
    case Level::Info: return LOG_INFO;
    case Level::Debug: return LOG_DEBUG;
  }
  return LOG_NOTICE;
}

// Formats into one string ending in exactly one newline.
std::string format_line(const char* fmt, va_list args) {
  char small[512];
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(small, sizeof small, fmt, args);
  std::string line;
  if (n < 0) {
    line = fmt != nullptr ? fmt : "";  // a bad format: show it rather than nothing
  } else if (static_cast<size_t>(n) < sizeof small) {
    line.assign(small, static_cast<size_t>(n));
  } else {
    line.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(line.data(), line.size(), fmt, again);
    line.resize(static_cast<size_t>(n));
  }
  va_end(again);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  line += '\n';
  return line;
}

// Serializes writes to stdout (write_stdout()), and the log's writes to stderr with them when
// both are the same file (g_stderr_is_stdout): on one pipe, a dump block larger than PIPE_BUF
// goes in pieces, and a log line written meanwhile would land inside it. Where they differ, the
// log never waits for stdout's reader (nor the dump for the log's).
std::mutex g_stdout_mutex;
std::atomic<bool> g_stderr_is_stdout{false};

bool same_file(int a, int b) {
  struct stat sa, sb;
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// The last line on stderr (stdout) was cut short: a write failed part way through it (a full
// disk), and the next line written must not be glued onto it. Each is written by one thread at a
// time: stderr's by the logger, or a direct writer under g_mutex when there is none; stdout's
// under g_stdout_mutex (stderr's too, when it is stdout: then stdout's flag serves both).
std::atomic<bool> g_stderr_cut{false};
std::atomic<bool> g_stdout_cut{false};

std::atomic<uint64_t> g_lost{0};  // lost_lines()

// write_fully() of `text`, which ends in a newline, on a line of its own: after a cut line, the
// same write first ends that one. True when all of `text` was written.
bool write_whole_lines(int fd, std::string_view text, std::atomic<bool>& cut) {
  if (!cut.load(std::memory_order_relaxed)) {
    const size_t done = write_fully(fd, text);
    cut.store(done != 0 && done != text.size(), std::memory_order_relaxed);
    return done == text.size();
  }
  std::string ended = "\n";
  ended += text;
  const size_t done = write_fully(fd, ended);
  cut.store(done != 1 && done != ended.size(), std::memory_order_relaxed);
  return done == ended.size();
}

void write_log_line(std::string_view line, std::atomic<bool>& cut) {
  if (!write_whole_lines(STDERR_FILENO, line, cut)) g_lost.fetch_add(1, std::memory_order_relaxed);
}

void emit(Level level, const std::string& line) {
  if (g_syslog.load(std::memory_order_relaxed)) {
    // One syslog entry per message; the trailing newline is syslog's business.
    syslog(syslog_priority(level), "%.*s", static_cast<int>(line.size() - 1), line.c_str());
    return;
  }
  if (!g_stderr_is_stdout.load(std::memory_order_relaxed)) {
    write_log_line(line, g_stderr_cut);
    return;
  }
  std::lock_guard<std::mutex> shared_sink(g_stdout_mutex);
  write_log_line(line, g_stdout_cut);
}

struct Entry {
  Level level;
  std::string line;  // ends in one newline
};

size_t cost(const Entry& e) { return sizeof(Entry) + e.line.size(); }

// The bounded queue and the one thread that writes it out (see log.h). Producers hold mutex_ only
// to append; the logger holds it only to take a line and to count it written, never across I/O.
class Logger {
 public:
  // Queues `line` (moved from) or drops it when the queue is full. False when no logger runs:
  // the caller writes the line itself.
  bool push(Level level, std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == State::Off || stopping_) return false;
    Entry e{level, std::move(line)};
    if (state_ == State::Abandoned || bytes_ + cost(e) > kQueueBytes) {
      ++dropped_;
      ++dropped_total_;
      return true;
    }
    if (dropped_ > 0) queue_drop_report();  // in order: the lines were dropped before this one
    append(std::move(e));
    return true;
  }

  void start() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ != State::Off) return;
    // The logger takes no signal: they are for the master (signalfd), which may block them only
    // after this thread exists; a thread inherits the signal mask of its creator.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      thread_ = std::thread([this] { run(); });
      ::pthread_setname_np(thread_.native_handle(), "logger");
    } catch (const std::system_error&) {
      // no thread: lines are written directly, as before init()
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (!thread_.joinable()) return;
    state_ = State::Running;
    stopping_ = false;
  }

  bool flush() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (state_ != State::Running) return state_ == State::Off;
    if (dropped_ > 0) queue_drop_report();  // every queued line came before the drops
    const uint64_t target = queued_;
    while (written_ < target) {
      const uint64_t before = written_;
      if (!progress_.wait_for(lock, kFlushPatience, [&] { return written_ != before; })) return false;
    }
    return true;
  }

  // Only when no other thread logs any more (at exit).
  void stop() {
    const bool drained = flush();
    std::unique_lock<std::mutex> lock(mutex_);
    if (state_ != State::Running) return;
    stopping_ = true;
    wake_.notify_one();
    if (!drained) {  // blocked in a write that may never return: leave it (and this object) be
      state_ = State::Abandoned;
      thread_.detach();
      return;
    }
    lock.unlock();
    thread_.join();  // it returns once the queue is empty
    lock.lock();
    state_ = State::Off;
    stopping_ = false;
  }

  uint64_t dropped_total() {
    std::lock_guard<std::mutex> lock(mutex_);
    return dropped_total_;
  }

 private:
  enum class State { Off, Running, Abandoned };
  static constexpr std::chrono::seconds kFlushPatience{1};

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Entry e = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      emit(e.level, e.line);  // the only place that waits for the sink
      lock.lock();
      bytes_ -= cost(e);
      ++written_;
      if (queue_.empty() && dropped_ > 0) queue_drop_report();  // the sink took everything again
      progress_.notify_all();
    }
  }

  void append(Entry&& e) {
    bytes_ += cost(e);
    ++queued_;
    queue_.push_back(std::move(e));
    wake_.notify_one();
  }

  void queue_drop_report() {
    append(Entry{Level::Warning, "balance: " + std::to_string(dropped_) +
                                     " log lines dropped (the log reader was not keeping up)\n"});
    dropped_ = 0;
  }

  std::mutex mutex_;
  std::condition_variable wake_;      // the logger: a line was queued, or stop
  std::condition_variable progress_;  // flush(): a line was written
  std::deque<Entry> queue_;
  size_t bytes_ = 0;            // the cost of the queued lines and of the one being written
  uint64_t queued_ = 0;         // lines queued since start
  uint64_t written_ = 0;        // of those, written
  uint64_t dropped_ = 0;        // since the last report
  uint64_t dropped_total_ = 0;  // since start
  State state_ = State::Off;
  bool stopping_ = false;
  std::thread thread_;
};

// Never destroyed: a logger thread abandoned in a blocked write at exit must not lose it.
Logger& logger() {
  static Logger* const instance = new Logger;
  return *instance;
}

}  // namespace

size_t write_fully(int fd, std::string_view text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w > 0) {
      done += static_cast<size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) return done;
    } else {
      return done;
    }
  }
  return done;
}

void write_stdout(std::string_view text) {
  std::lock_guard<std::mutex> lock(g_stdout_mutex);
  write_whole_lines(STDOUT_FILENO, text, g_stdout_cut);
}

void init(bool to_syslog, bool debug) {
  g_stderr_is_stdout.store(same_file(STDOUT_FILENO, STDERR_FILENO), std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_debug.store(debug, std::memory_order_relaxed);
    const bool was = g_syslog.exchange(to_syslog, std::memory_order_relaxed);
    if (to_syslog && !was) openlog("balance", LOG_PID, LOG_DAEMON);
    if (!to_syslog && was) closelog();
  }
  logger().start();
}

bool flush() { return logger().flush(); }

void shutdown() { logger().stop(); }

uint64_t dropped_lines() { return logger().dropped_total(); }

uint64_t lost_lines() { return g_lost.load(std::memory_order_relaxed); }

bool debug_enabled() { return g_debug.load(std::memory_order_relaxed); }

void write(Level level, const char* fmt, ...) {
  const bool debug = level == Level::Debug;
  if (debug && !debug_enabled()) return;
  const int saved_errno = errno;  // callers may log between a failing call and reading errno
  va_list args;
  va_start(args, fmt);
  std::string line = format_line(fmt, args);
  va_end(args);
  if (!logger().push(level, line)) {
    std::lock_guard<std::mutex> lock(g_mutex);
    emit(level, line);
  }
  errno = saved_errno;
}

}  // namespace balance::log
