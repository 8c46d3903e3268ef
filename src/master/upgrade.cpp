#include "master/upgrade.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>

extern char** environ;

#include "net/loop.h"

namespace balance::master {
namespace {

constexpr const char* kEnv = "BALANCE_UPGRADE";
constexpr int kReportTimeoutMs = 30000;

std::string g_binary;              // the binary's path when this process started
std::vector<std::string> g_args;  // argv, argv[0] included

// Descriptor numbers from "name=N[:N...]" in `text` (fields separated by ','); empty if absent or bad.
std::vector<int> fields(const std::string& text, const std::string& name) {
  std::vector<int> fds;
  size_t at = text.find(name + "=");
  if (at == std::string::npos) return fds;
  const char* p = text.c_str() + at + name.size() + 1;
  for (;;) {
    char* end = nullptr;
    const long v = std::strtol(p, &end, 10);
    if (end == p || v <= 2 || v >= INT_MAX || fds.size() >= 1024) return {};
    fds.push_back(static_cast<int>(v));
    if (*end != ':') return fds;
    p = end + 1;
  }
}

int field(const std::string& text, const std::string& name) {
  const auto fds = fields(text, name);
  return fds.size() == 1 ? fds[0] : -1;
}

enum class ReportEnd { Closed, TimedOut, Cancelled };

// Reads the successor's report until it arrives, the pipe closes, the deadline passes, or
// `interruption` cancels the wait; its `waiting` runs at least once a second meanwhile.
std::string read_report(int fd, const Interruption& interruption, ReportEnd& end) {
  std::string out;
  end = ReportEnd::Closed;
  const uint64_t deadline = net::EventLoop::clock_ms() + kReportTimeoutMs;
  for (;;) {
    if (interruption.waiting) interruption.waiting();
    const uint64_t now = net::EventLoop::clock_ms();
    if (now >= deadline) {
      end = ReportEnd::TimedOut;
      return out;
    }
    pollfd p[2] = {{fd, POLLIN, 0}, {interruption.fd, POLLIN, 0}};
    const auto slice = static_cast<int>(std::min<uint64_t>(deadline - now, 1000));
    if (::poll(p, interruption.fd >= 0 ? 2 : 1, slice) <= 0) continue;
    if (p[0].revents != 0) {  // first: a successor that reported serves, whatever came meanwhile
      char buf[512];
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > 4096) return out;
      continue;
    }
    if (out == "0") return out;  // reported, not closed yet: it serves
    if ((p[1].revents & POLLIN) && interruption.cancel()) {
      end = ReportEnd::Cancelled;
      return out;
    }
  }
}

// A descriptor the exec'd program keeps (dup() clears close-on-exec on the copy).
int inheritable(int fd) { return ::dup(fd); }

// In the forked child when execve failed: "exec\t<errno>" on the report pipe. Only
// async-signal-safe calls (the parent is multithreaded).
void report_exec_failure(int fd, int err) {
  char msg[32] = "exec\t";
  size_t n = 5;
  char digits[12];
  size_t d = 0;
  do {
    digits[d++] = static_cast<char>('0' + err % 10);
    err /= 10;
  } while (err > 0 && d < sizeof digits);
  while (d > 0) msg[n++] = digits[--d];
  [[maybe_unused]] ssize_t w = ::write(fd, msg, n);
}

// Why the successor did not take over, from its report ("<code>\t<message>", "exec\t<errno>",
// or nothing) and its wait status: one line for the log.
std::string why_not_started(const std::string& report, ReportEnd end, int status) {
  if (end == ReportEnd::Cancelled) return "cancelled by a stop signal before the new master served; it was killed";
  if (report.starts_with("exec\t")) {
    return "cannot execute " + g_binary + ": " + std::strerror(std::atoi(report.c_str() + 5));
  }
  const size_t tab = report.find('\t');
  if (tab != std::string::npos) {
    // Its message was written for its own start ("..., exiting."): the exiting is its own.
    std::string why = report.substr(tab + 1);
    if (why.ends_with(", exiting.")) why.resize(why.size() - 10);
    return "the new master did not start: " + why;
  }
  if (end == ReportEnd::TimedOut) {
    return "the new master (" + g_binary + ") did not report within " + std::to_string(kReportTimeoutMs / 1000) +
           " s; it was killed";
  }
  if (WIFEXITED(status)) {
    return "the new master (" + g_binary + ") exited with status " + std::to_string(WEXITSTATUS(status)) +
           " before serving";
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL) {
    return "the new master (" + g_binary + ") was killed by signal " + std::to_string(WTERMSIG(status)) +
           " before serving";
  }
  return "the new master (" + g_binary + ") closed its report pipe without serving; it was killed";
}

}  // namespace

void remember_invocation(int argc, const char* const* argv) {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  g_binary = n > 0 ? std::string(path, static_cast<size_t>(n)) : (argc > 0 ? argv[0] : "balance");
  // A binary replaced on disk (installed by rename) shows as "<path> (deleted)": the path names the new one.
  const std::string deleted = " (deleted)";
  if (g_binary.size() > deleted.size() && g_binary.ends_with(deleted)) g_binary.resize(g_binary.size() - deleted.size());
  g_args.assign(argv, argv + argc);
}

std::optional<Inheritance> inherited() {
  const char* value = std::getenv(kEnv);
  if (value == nullptr) return std::nullopt;
  const std::string text = value;
  ::unsetenv(kEnv);  // a later upgrade of the new master starts clean
  Inheritance in;
  const std::vector<int> listen_fds = fields(text, "listen");
  in.segment_fd = field(text, "segment");
  const int report_fd = field(text, "report");
  if (listen_fds.empty() || in.segment_fd < 0 || report_fd < 0) return std::nullopt;
  // Each descriptor has one owner: one named twice ("listen=5:5", "report=" the segment's,
  // set by hand) was closed twice, cutting whatever had reused the number meanwhile.
  std::vector<int> all = listen_fds;
  all.push_back(in.segment_fd);
  all.push_back(report_fd);
  if (const int metrics_fd = field(text, "metrics"); metrics_fd >= 0) all.push_back(metrics_fd);
  std::sort(all.begin(), all.end());
  if (std::adjacent_find(all.begin(), all.end()) != all.end()) return std::nullopt;
  for (int fd : listen_fds) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    in.listeners.emplace_back(fd);
  }
  if (const int metrics_fd = field(text, "metrics"); metrics_fd >= 0) {
    ::fcntl(metrics_fd, F_SETFD, FD_CLOEXEC);
    in.metrics.reset(metrics_fd);
  }
  ::fcntl(in.segment_fd, F_SETFD, FD_CLOEXEC);
  ::fcntl(report_fd, F_SETFD, FD_CLOEXEC);
  in.report.reset(report_fd);
  return in;
}

std::optional<int> start_successor(const std::vector<int>& listen_fds, int metrics_fd, int segment_fd,
                                   const Interruption& interruption, Failure& failure) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    failure = {kExitOsErr, std::string("upgrade: cannot create pipe: ") + std::strerror(errno)};
    return std::nullopt;
  }
  net::Fd read_end(fds[0]);
  net::Fd write_end(fds[1]);
  // Copies the child keeps across exec; this process closes its own copies after the fork.
  std::vector<net::Fd> child_listen;
  std::string listen_list;
  for (int fd : listen_fds) {
    child_listen.emplace_back(inheritable(fd));
    listen_list += (listen_list.empty() ? "" : ":") + std::to_string(child_listen.back().get());
  }
  net::Fd child_metrics(metrics_fd >= 0 ? inheritable(metrics_fd) : -1);
  net::Fd child_segment(inheritable(segment_fd));
  net::Fd child_report(inheritable(write_end.get()));
  const bool all_copied = child_segment && child_report && (metrics_fd < 0 || child_metrics) &&
                          std::all_of(child_listen.begin(), child_listen.end(), [](const net::Fd& fd) { return bool(fd); });
  if (!all_copied) {  // the new master would not find them, and start as if it were the first
    failure = {kExitOsErr, std::string("upgrade: cannot copy descriptors for the new master: ") + std::strerror(errno)};
    return std::nullopt;
  }
  // Everything exec needs is built before fork: between fork and exec only async-signal-safe calls.
  std::string env = std::string(kEnv) + "=listen=" + listen_list + ",segment=" +
                    std::to_string(child_segment.get()) + ",report=" + std::to_string(child_report.get()) +
                    (child_metrics ? ",metrics=" + std::to_string(child_metrics.get()) : "");
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    // systemd's watchdog names this process; the successor pings once it is the main process.
    if (std::strncmp(*e, "WATCHDOG_PID=", 13) != 0) envp.push_back(*e);
  }
  envp.push_back(env.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : g_args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int report_fd = child_report.get();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execve(g_binary.c_str(), argv.data(), envp.data());
    report_exec_failure(report_fd, errno);
    ::_exit(127);
  }
  child_listen.clear();
  child_metrics.reset();
  child_segment.reset();
  child_report.reset();
  write_end.reset();
  if (pid < 0) {
    failure = {kExitOsErr, std::string("upgrade: cannot fork: ") + std::strerror(errno)};
    return std::nullopt;
  }
  ReportEnd end = ReportEnd::Closed;
  const std::string report = read_report(read_end.get(), interruption, end);
  if (report == "0") return pid;
  // It failed, exited, or closed the pipe and went on: it is not the master either way.
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  failure = {kExitSoftware, "upgrade: " + why_not_started(report, end, status)};
  return std::nullopt;
}

void report_to_predecessor(Inheritance& inheritance, const std::optional<Failure>& failure) {
  if (!inheritance.report) return;
  const std::string msg = failure ? std::to_string(failure->exit_code) + "\t" + failure->message : "0";
  [[maybe_unused]] ssize_t n = ::write(inheritance.report.get(), msg.data(), msg.size());
  inheritance.report.reset();
}

}  // namespace balance::master
