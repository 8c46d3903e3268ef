#include "master/daemon.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

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
