#include "master/daemon.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace balance::master {
namespace {

// Reads the whole report: "<code>\t<message>" or "0".
std::string read_all(int fd) {
  std::string out;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > 4096) break;  // a report is one line; never grow without bound
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  return out;
}

void redirect_std_streams() {
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);  // dup2 clears O_CLOEXEC on the copies
  if (null > 2) ::close(null);
}

// Descriptors past the standard three that the caller left open (a script's `3>&1`, the status
// pipe of whatever started balance) would keep the caller's files and pipes open for as long as
// the daemon runs (daemon(7)). Every descriptor balance opens itself is close-on-exec, so one
// without the flag was inherited: those are closed.
void close_inherited_descriptors() {
  std::vector<int> inherited;
  if (DIR* dir = ::opendir("/proc/self/fd")) {  // its own descriptor is close-on-exec
    while (const dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
      const int fd = std::atoi(entry->d_name);
      if (fd > 2) inherited.push_back(fd);
    }
    ::closedir(dir);
  } else {
    const long open_max = ::sysconf(_SC_OPEN_MAX);  // no /proc: try the numbers (bounded)
    const long end = open_max > 0 ? std::min(open_max, 65536L) : 1024L;
    for (long fd = 3; fd < end; ++fd) inherited.push_back(static_cast<int>(fd));
  }
  for (const int fd : inherited) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) == 0) ::close(fd);
  }
}

}  // namespace

std::optional<int> StartupReport::daemonize() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "cannot create pipe: %s, exiting.\n", std::strerror(errno));
    return kExitOsErr;
  }
  net::Fd read_end(fds[0]);
  net::Fd write_end(fds[1]);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::fprintf(stderr, "cannot fork: %s, exiting.\n", std::strerror(errno));
    return kExitOsErr;
  }
  if (pid == 0) {
    read_end.reset();
    ::setsid();
    if (::chdir("/") != 0) {
      // Staying in the launch directory is harmless; nothing depends on it.
    }
    redirect_std_streams();
    close_inherited_descriptors();
    pipe_ = std::move(write_end);
    return std::nullopt;
  }
  write_end.reset();
  const std::string report = read_all(read_end.get());
  if (report == "0") return kExitOk;
  if (report.empty()) {
    int status = 0;
    ::waitpid(pid, &status, WNOHANG);
    std::fprintf(stderr, "balance daemon exited during start-up, exiting.\n");
    return kExitSoftware;
  }
  const size_t tab = report.find('\t');
  const int code = std::atoi(report.substr(0, tab).c_str());
  std::fprintf(stderr, "%s\n", tab == std::string::npos ? report.c_str() : report.c_str() + tab + 1);
  return code > 0 && code < 256 ? code : kExitSoftware;
}

void StartupReport::send(const std::optional<Failure>& failure) {
  if (!pipe_) return;
  const std::string msg = failure ? std::to_string(failure->exit_code) + "\t" + failure->message : "0";
  [[maybe_unused]] ssize_t n = ::write(pipe_.get(), msg.data(), msg.size());
  pipe_.reset();
}

}  // namespace balance::master
