// A full disk for the log and dump tests: stdout or stderr pointed at a scratch file whose size
// RLIMIT_FSIZE limits (a write past it is cut short, the next fails with EFBIG; SIGXFSZ, which
// would kill the test, is ignored meanwhile). Everything is put back on destruction, also when an
// assertion ends the test early.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace balance::log::testing {

class FullDisk {
 public:
  explicit FullDisk(int fd) : fd_(fd) {
    char path[] = "/tmp/balance-full-disk-XXXXXX";
    file_ = ::mkstemp(path);
    if (file_ < 0) std::abort();
    ::unlink(path);
    std::fflush(stdout);
    saved_ = ::dup(fd_);
    ::dup2(file_, fd_);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGXFSZ, &ignore, &old_action_);
    ::getrlimit(RLIMIT_FSIZE, &old_limit_);
  }
  ~FullDisk() {
    room_again();
    ::dup2(saved_, fd_);
    ::close(saved_);
    ::sigaction(SIGXFSZ, &old_action_, nullptr);
    ::close(file_);
  }
  FullDisk(const FullDisk&) = delete;
  FullDisk& operator=(const FullDisk&) = delete;

  // The file may grow to `bytes` and no further; false if the limit cannot be set.
  bool fill_at(rlim_t bytes) {
    rlimit limit = old_limit_;
    limit.rlim_cur = bytes;
    return ::setrlimit(RLIMIT_FSIZE, &limit) == 0;
  }
  // The space is back.
  bool room_again() { return ::setrlimit(RLIMIT_FSIZE, &old_limit_) == 0; }

  // Everything written to the file so far.
  std::string contents() const {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::pread(file_, buf, sizeof buf, static_cast<off_t>(out.size()))) > 0) {
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
  int file_ = -1;
  int saved_ = -1;
  struct sigaction old_action_ {};
  rlimit old_limit_{};
};

}  // namespace balance::log::testing
