#include "log/log.h"

#include <poll.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <string>

namespace balance::log {

namespace {

std::atomic<bool> g_syslog{false};
std::atomic<bool> g_debug{false};
std::mutex g_mutex;  // serializes stderr lines and openlog/closelog

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

void write_stderr(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_mutex);
  write_fully(STDERR_FILENO, line);
}

}  // namespace

void write_fully(int fd, std::string_view text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w > 0) {
      done += static_cast<size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) return;
    } else {
      return;
    }
  }
}

void init(bool to_syslog, bool debug) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_debug.store(debug, std::memory_order_relaxed);
  const bool was = g_syslog.exchange(to_syslog, std::memory_order_relaxed);
  if (to_syslog && !was) openlog("balance", LOG_PID, LOG_DAEMON);
  if (!to_syslog && was) closelog();
}

bool debug_enabled() { return g_debug.load(std::memory_order_relaxed); }

void write(Level level, const char* fmt, ...) {
  const bool debug = level == Level::Debug;
  if (debug && !debug_enabled()) return;
  const int saved_errno = errno;  // callers may log between a failing call and reading errno
  va_list args;
  va_start(args, fmt);
  const std::string line = format_line(fmt, args);
  va_end(args);
  if (g_syslog.load(std::memory_order_relaxed)) {
    // One syslog entry per message; the trailing newline is syslog's business.
    syslog(syslog_priority(level), "%.*s", static_cast<int>(line.size() - 1), line.c_str());
  } else {
    write_stderr(line);
  }
  errno = saved_errno;
}

}  // namespace balance::log
