#include "ctl/segment_os.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "ctl/names.h"

namespace balance::ctl::os {
namespace {

flock byte_range(short type, off_t byte) {
  flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  fl.l_pid = 0;  // required by F_OFD_*
  return fl;
}

void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

}  // namespace

std::string segment_name(const InstanceId& id) {
  const std::string stem = segment_stem(id.port, id.bind_text);
  return id.use_mmap ? run_directory() + "/" + stem : "/" + stem;
}

bool ensure_run_directory(const std::string& dir, Failure& failure) {
  const std::string shown = shown_path(dir);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    failure = {kExitCantCreat, "cannot create run directory " + shown + ": " + std::strerror(errno)};
    return false;
  }
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) {
    failure = {kExitCantCreat, "cannot use run directory " + shown + ": " + std::strerror(errno)};
    return false;
  }
  // A directory someone else owns or may write could hold a planted file or symlink. The
  // message says which of these it is (it said all three at once).
  std::string problem;
  if (S_ISLNK(st.st_mode)) {
    problem = "a symbolic link";
  } else if (!S_ISDIR(st.st_mode)) {
    problem = "not a directory";
  } else if (st.st_uid != ::geteuid()) {
    problem = "owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " + std::to_string(::geteuid()) + ")";
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    problem = "writable by its group or others";
  }
  if (!problem.empty()) {
    failure = {kExitCantCreat, "unsafe run directory " + shown + ": " + problem};
    return false;
  }
  // Ours but without write or search permission, or on a read-only file system: said of the
  // directory (it was "cannot replace control segment DIR/balance.PORT", of a file not there).
  if (::faccessat(AT_FDCWD, dir.c_str(), W_OK | X_OK, AT_EACCESS) != 0) {
    failure = {kExitCantCreat, "cannot use run directory " + shown + ": " + std::strerror(errno)};
    return false;
  }
  return true;
}

int open_existing(const std::string& name, bool is_file) {
  if (is_file) return ::open(name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  return ::shm_open(name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
}

int create_exclusive(const std::string& name, bool is_file) {
  const int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  const int fd = is_file ? ::open(name.c_str(), flags | O_NOCTTY, 0600) : ::shm_open(name.c_str(), flags, 0600);
  if (fd >= 0) ::fchmod(fd, 0600);  // whatever the umask did
  return fd;
}

int remove_name(const std::string& name, bool is_file) {
  return is_file ? ::unlink(name.c_str()) : ::shm_unlink(name.c_str());
}

bool stat_name(const std::string& name, bool is_file, struct stat& st) {
  const std::string path = is_file ? name : "/dev/shm" + name;  // where glibc's shm_open() keeps it
  return ::lstat(path.c_str(), &st) == 0;
}

bool lock_byte(int fd, off_t byte, int wait_ms) {
  long waited = 0;
  long step = 1;
  for (;;) {
    flock fl = byte_range(F_WRLCK, byte);
    if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return true;
    if ((errno != EAGAIN && errno != EACCES && errno != EINTR) || waited >= wait_ms) return false;
    sleep_ms(step);
    waited += step;
    step = step < 16 ? step * 2 : 16;
  }
}

void unlock_byte(int fd, off_t byte) {
  flock fl = byte_range(F_UNLCK, byte);
  ::fcntl(fd, F_OFD_SETLK, &fl);
}

bool byte_locked_elsewhere(int fd, off_t byte) {
  flock fl = byte_range(F_WRLCK, byte);
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return false;
  return fl.l_type != F_UNLCK;
}

}  // namespace balance::ctl::os
