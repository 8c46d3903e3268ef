#include "ctl/segment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "ctl/names.h"
#include "ctl/proc.h"
#include "ctl/segment_os.h"

namespace balance::ctl {
namespace {

// What the SIGBUS handler knows of the one segment a process maps (only lock-free atomics and
// a message written before the handler is installed: it runs inside a fault).
struct SizeGuard {
  std::atomic<const char*> base{nullptr};
  std::atomic<int> fd{-1};
  std::atomic<int> wake{-1};  // the master's eventfd once it serves; -1: a client
  std::atomic<bool> truncated{false};
  char message[512] = {};         // a client's last words
  char master_message[512] = {};  // a master's, when the size put back gets no storage
};
SizeGuard g_guard;

// Ends the process with one line, from a fault handler: when several threads meet the fault at
// once, one of them writes the line and exits, the others wait for the end.
[[noreturn]] void die_of_fault(const char* message, int code) {
  static std::atomic<bool> dying{false};
  if (dying.exchange(true)) {
    for (;;) ::pause();
  }
  [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, message, std::strlen(message));
  ::_exit(code);
}

void on_sigbus(int sig, siginfo_t* info, void* /*context*/) {
  const char* base = g_guard.base.load();
  const auto* addr = static_cast<const char*>(info->si_addr);
  if (base == nullptr || addr < base || addr >= base + sizeof(core::Table)) {
    ::signal(sig, SIG_DFL);  // not ours: the retried access dies of it, as without a handler
    return;
  }
  const int saved_errno = errno;
  const int wake = g_guard.wake.load();
  if (wake < 0) die_of_fault(g_guard.message, kExitDataErr);
  const int fd = g_guard.fd.load();
  if (::ftruncate(fd, sizeof(core::Table)) != 0) {
    ::signal(sig, SIG_DFL);
    return;
  }
  // ftruncate() gives the pages back no storage: on a full file system the retried access would
  // fault again, for ever (a master spinning, serving nobody).
  if (::fallocate(fd, 0, 0, sizeof(core::Table)) != 0 && errno != EOPNOTSUPP) {
    die_of_fault(g_guard.master_message, kExitCantCreat);
  }
  g_guard.truncated.store(true);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake, &one, sizeof one);
  errno = saved_errno;
}

// From the mapping on: faults on it end the process with one line (clients), until a master
// takes them over (Segment::guard_size).
void guard_mapping(const void* base, int fd, const InstanceId& id) {
  const std::string message = "control segment of balance on " + instance_label(id.port, id.bind_text) +
                              " was truncated by another process, exiting.\n";
  std::strncpy(g_guard.message, message.c_str(), sizeof g_guard.message - 1);
  const std::string master_message = "control segment of balance on " + instance_label(id.port, id.bind_text) +
                                     " was truncated by another process and there is no room to write it anew, "
                                     "exiting.\n";
  std::strncpy(g_guard.master_message, master_message.c_str(), sizeof g_guard.master_message - 1);
  g_guard.fd.store(fd);
  g_guard.base.store(static_cast<const char*>(base));
  struct sigaction sa{};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

Failure invalid_failure(const InstanceId& id, const std::string& why) {
  return {kExitDataErr,
          "invalid control segment of balance on " + instance_label(id.port, id.bind_text) + ": " + why + ", exiting."};
}

Failure system_failure(const std::string& what, const std::string& name, int err) {
  return {kExitOsErr, what + " " + shown_path(name) + ": " + std::strerror(err)};
}

// Why a mapped header is not one this program can use; empty when it is.
std::string header_problem(const core::Header& h) {
  if (std::memcmp(h.magic, core::kMagic, sizeof core::kMagic) != 0) return "bad magic";
  if (h.layout_version != core::kLayoutVersion) {
    return "layout version " + std::to_string(h.layout_version) + ", expected " + std::to_string(core::kLayoutVersion);
  }
  if (h.table_size != sizeof(core::Table) || h.max_groups != core::kMaxGroups || h.max_channels != core::kMaxChannels) {
    return "table size or limits differ from this program's";
  }
  return {};
}

bool header_unwritten(const core::Header& h) {
  static constexpr char kZero[sizeof h.magic] = {};
  return std::memcmp(h.magic, kZero, sizeof kZero) == 0;
}

void trace_line(const Trace& trace, const std::string& line) {
  if (trace) trace(line);
}

// A segment left by a dead master is removed; one with a live master is never touched.
bool remove_stale(const std::string& name, bool is_file, const InstanceId& id, Failure& failure) {
  const int fd = os::open_existing(name, is_file);
  if (fd >= 0) {
    const bool live = os::byte_locked_elsewhere(fd, os::kLivenessByte);
    ::close(fd);
    if (live) {
      failure = {kExitUnavailable, "balance on " + instance_label(id.port, id.bind_text) + " is already running"};
      return false;
    }
  }
  if (os::remove_name(name, is_file) != 0 && errno != ENOENT) {
    failure = {kExitCantCreat, "cannot replace control segment " + shown_path(name) + ": " + std::strerror(errno)};
    return false;
  }
  return true;
}

// Checks what a descriptor handed over by a predecessor refers to; false with `failure` filled.
bool adoptable(int fd, const InstanceId& id, Failure& failure) {
  struct stat st{};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    failure = system_failure("cannot use inherited control segment of balance on",
                             instance_label(id.port, id.bind_text), fd < 0 ? EBADF : errno);
    return false;
  }
  if (!S_ISREG(st.st_mode) || st.st_size != static_cast<off_t>(sizeof(core::Table))) {
    failure = invalid_failure(id, "the inherited descriptor is not a control segment");
    return false;
  }
  if (!os::lock_byte(fd, os::kLivenessByte, 0)) {  // ours already: this only confirms it
    failure = invalid_failure(id, "the inherited descriptor does not hold the master lock");
    return false;
  }
  return true;
}

// Whether the nearest directory above `path` that can be examined belongs to this user (which
// is then the one whose permissions refused the path).
bool refused_by_own_directory(std::string path) {
  for (;;) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos || slash == 0) return false;
    path.resize(slash);
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) return st.st_uid == ::geteuid();
    if (errno != EACCES) return false;
  }
}

// Opens the named segment for a client; -1 with `failure` filled (69, 77, 65 or 71) otherwise.
int open_for_attach(const std::string& name, bool is_file, const InstanceId& id, Failure& failure) {
  const int fd = os::open_existing(name, is_file);
  if (fd >= 0) return fd;
  const int err = errno;
  if (err == ENOENT || err == ENOTDIR) {
    failure = no_master_failure();
  } else if (err == EACCES || err == EPERM) {
    failure = permission_failure(id);
    // With -M, a run directory of this user that it may not search (mode 0600, say), or one
    // below such a directory ($XDG_RUNTIME_DIR/balance), is no instance of another user: say
    // what was refused. The directory that refused is the nearest one above that can be seen.
    if (is_file && ::geteuid() != 0 && refused_by_own_directory(name)) {
      failure = {kExitNoPerm, "cannot open control segment " + shown_path(name) + ": " + std::strerror(err)};
    }
  } else if (err == ELOOP) {
    failure = invalid_failure(id, shown_path(name) + " is a symbolic link");
  } else {
    failure = system_failure("cannot open control segment", name, err);
  }
  return -1;
}

}  // namespace

Failure no_master_failure() { return {kExitUnavailable, "no master process, exiting."}; }

Failure permission_failure(const InstanceId& id) {
  return {kExitNoPerm, "permission denied: balance on " + instance_label(id.port, id.bind_text) +
                           " belongs to another user, exiting."};
}

Segment::~Segment() {
  if (table_ != nullptr) {
    const char* mine = reinterpret_cast<const char*>(table_);
    g_guard.base.compare_exchange_strong(mine, nullptr);
    ::munmap(table_, sizeof(core::Table));
  }
  if (fd_ >= 0) ::close(fd_);
}

bool Segment::map(Failure& failure) {
  struct stat st{};
  if (::fstat(fd_, &st) != 0) {
    failure = system_failure("cannot inspect control segment", name_, errno);
    return false;
  }
  owner_ = st.st_uid;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  void* p = ::mmap(nullptr, sizeof(core::Table), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    failure = system_failure("cannot map control segment", name_, errno);
    return false;
  }
  table_ = static_cast<core::Table*>(p);
  guard_mapping(p, fd_, id_);
  return true;
}

void Segment::guard_size(int wake) { g_guard.wake.store(wake); }

bool Segment::take_truncation() { return g_guard.truncated.exchange(false); }

std::unique_ptr<Segment> Segment::create(const InstanceId& id, Failure& failure, const Fill& fill) {
  if (id.use_mmap && !os::ensure_run_directory(run_directory(), failure)) return nullptr;
  std::unique_ptr<Segment> seg(new Segment());
  seg->id_ = id;
  seg->is_file_ = id.use_mmap;
  seg->name_ = os::segment_name(id);
  if (!remove_stale(seg->name_, seg->is_file_, id, failure)) return nullptr;
  seg->fd_ = os::create_exclusive(seg->name_, seg->is_file_);
  if (seg->fd_ < 0) {
    failure = {kExitCantCreat, "cannot create control segment " + shown_path(seg->name_) + ": " + std::strerror(errno)};
    return nullptr;
  }
  if (::ftruncate(seg->fd_, sizeof(core::Table)) != 0) {
    failure = system_failure("cannot size control segment", seg->name_, errno);
    os::remove_name(seg->name_, seg->is_file_);
    return nullptr;
  }
  // Storage for every page now: ftruncate() allocates none, and on a full file system (a small
  // /dev/shm, a full run directory) the first write to the table would fault instead.
  if (const int err = ::posix_fallocate(seg->fd_, 0, sizeof(core::Table)); err != 0) {
    failure = {kExitCantCreat, "cannot allocate control segment " + shown_path(seg->name_) + ": " + std::strerror(err)};
    os::remove_name(seg->name_, seg->is_file_);
    return nullptr;
  }
  if (!os::lock_byte(seg->fd_, os::kLivenessByte, 0)) {
    failure = system_failure("cannot lock control segment", seg->name_, errno);
    os::remove_name(seg->name_, seg->is_file_);
    return nullptr;
  }
  if (!seg->map(failure)) {
    os::remove_name(seg->name_, seg->is_file_);
    return nullptr;
  }
  seg->reinitialize(fill);
  return seg;
}

std::unique_ptr<Segment> Segment::attach(const InstanceId& id, Failure& failure, const Trace& trace) {
  std::unique_ptr<Segment> seg(new Segment());
  seg->id_ = id;
  seg->is_file_ = id.use_mmap;
  seg->name_ = os::segment_name(id);
  trace_line(trace, std::string("attach: ") + (seg->is_file_ ? "mapped file " : "shared memory ") + shown_path(seg->name_));
  seg->fd_ = open_for_attach(seg->name_, seg->is_file_, id, failure);
  if (seg->fd_ < 0) return nullptr;
  struct stat st{};
  if (::fstat(seg->fd_, &st) != 0) {
    failure = system_failure("cannot inspect control segment", seg->name_, errno);
    return nullptr;
  }
  trace_line(trace, "attach: owner uid " + std::to_string(st.st_uid) + ", mode " +
                        std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                        std::to_string(st.st_mode & 7) + ", " + std::to_string(st.st_size) + " bytes");
  if (st.st_uid != ::geteuid() && ::geteuid() != 0) {
    failure = permission_failure(id);
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    failure = invalid_failure(id, "not a regular file");
    return nullptr;
  }
  if (!os::byte_locked_elsewhere(seg->fd_, os::kLivenessByte)) {
    trace_line(trace, "attach: no process holds the master lock");
    failure = no_master_failure();
    return nullptr;
  }
  if (st.st_size != static_cast<off_t>(sizeof(core::Table))) {
    failure = invalid_failure(id, "size " + std::to_string(st.st_size) + ", expected " +
                                      std::to_string(sizeof(core::Table)));
    return nullptr;
  }
  if (!seg->map(failure) || !seg->check_header(failure, trace)) return nullptr;
  return seg;
}

std::unique_ptr<Segment> Segment::adopt(const InstanceId& id, int fd, Failure& failure) {
  std::unique_ptr<Segment> seg(new Segment());
  seg->id_ = id;
  seg->is_file_ = id.use_mmap;
  seg->name_ = os::segment_name(id);
  seg->fd_ = fd;
  if (!adoptable(fd, id, failure) || !seg->map(failure)) return nullptr;
  if (const std::string problem = header_problem(seg->table_->header); !problem.empty()) {
    failure = invalid_failure(id, problem);
    return nullptr;
  }
  seg->publish_master();
  return seg;
}

bool Segment::check_header(Failure& failure, const Trace& trace) const {
  const core::Header& h = table_->header;
  if (header_unwritten(h)) {
    trace_line(trace, "attach: header not written yet");
    failure = no_master_failure();
    return false;
  }
  if (const std::string problem = header_problem(h); !problem.empty()) {
    failure = invalid_failure(id_, problem);
    return false;
  }
  char version[sizeof h.program_version + 1] = {};
  std::memcpy(version, h.program_version, sizeof h.program_version);
  trace_line(trace, "attach: layout " + std::to_string(h.layout_version) + ", written by balance " + version +
                        ", master pid " + std::to_string(h.master_pid.load()) + ", start ticks " +
                        std::to_string(h.master_start_ticks) + ", started at " + std::to_string(h.start_time));
  if (live_master(false) == 0) {
    trace_line(trace, "attach: the master process is gone (or its PID was reused)");
    failure = no_master_failure();
    return false;
  }
  return true;
}

void Segment::reinitialize(const Fill& fill) {
  table_->init(0, own_start_ticks(), static_cast<int64_t>(std::time(nullptr)));
  if (fill) fill(*table_);
  publish_master();
}

// Under the seqlock of the flags' upper half (core::kMasterSeqOne), the start ticks first, then
// the pid: an older client, which knows no seqlock, still sees the new ticks with the new pid.
void Segment::publish_master() {
  core::Header& h = table_->header;
  // Odd while writing. A count left odd by a master that died in the middle is odd already: this
  // write makes it even first, then odd again.
  if (core::master_seq(h.flags.fetch_add(core::kMasterSeqOne, std::memory_order_relaxed)) & 1u) {
    h.flags.fetch_add(core::kMasterSeqOne, std::memory_order_relaxed);
  }
  // Release stores keep the odd count ordered before each field (see recorded_master()).
  std::atomic_ref<uint64_t>(h.master_start_ticks).store(own_start_ticks(), std::memory_order_release);
  h.master_pid.store(::getpid(), std::memory_order_release);
  h.flags.fetch_add(core::kMasterSeqOne, std::memory_order_release);
}

// The pid and start ticks as one master wrote them. A master writes them in a few nanoseconds,
// unless it is preempted between its stores: a client then waits for it (at most about 20 ms).
// A count still odd after that was left by a master that died writing (it is not live either
// way), or a foreign write: the fields are then read as they are, twice, until the pid holds
// still, as from a master of an older version that writes without the count.
Segment::MasterIdentity Segment::recorded_master() const {
  core::Header& h = table_->header;
  std::atomic_ref<uint64_t> ticks(h.master_start_ticks);
  MasterIdentity id;
  for (int i = 0; i < 500; ++i) {
    const uint32_t before = core::master_seq(h.flags.load(std::memory_order_acquire));
    if (before & 1u) {
      if (i >= 100) ::usleep(50);  // first spin: the writer is most likely running
      continue;
    }
    // Acquire loads: reading a field of a write under way makes the re-read below see its count.
    id.pid = h.master_pid.load(std::memory_order_acquire);
    id.start_ticks = ticks.load(std::memory_order_acquire);
    if (core::master_seq(h.flags.load(std::memory_order_relaxed)) == before) return id;
  }
  for (int i = 0; i < 16; ++i) {
    id.pid = h.master_pid.load(std::memory_order_acquire);
    id.start_ticks = ticks.load(std::memory_order_acquire);
    if (h.master_pid.load(std::memory_order_relaxed) == id.pid) break;
  }
  return id;
}

bool Segment::is_live_master(const MasterIdentity& id, bool strict) const {
  if (id.pid <= 1) return false;
  const auto info = read_process(id.pid);
  if (!info || !info->running() || info->start_ticks != id.start_ticks) return false;
  if (info->euid != owner_) return false;  // a master runs as the user that created its segment
  if (!os::byte_locked_elsewhere(fd_, os::kLivenessByte)) return false;
  return !strict || maps_file(id.pid, dev_, ino_);
}

// While an upgrade hands over, the header changes from the old master to the new one, both
// live: a check that fails while the header changed under it is made again, so that neither
// is taken for gone (the -i banner said "PID 0", a command "no master process").
Segment::MasterIdentity Segment::live_master_identity(bool strict) const {
  MasterIdentity id = recorded_master();
  for (int i = 0; i < 8; ++i) {
    if (is_live_master(id, strict)) return id;
    const MasterIdentity now = recorded_master();
    if (now == id) break;
    id = now;
  }
  return {};
}

// Only if the name still refers to our segment (a successor may have made its own), checked
// without a descriptor: a start that failed for want of descriptors removes it too.
void Segment::unlink() {
  struct stat st{};
  if (os::stat_name(name_, is_file_, st) && st.st_dev == dev_ && st.st_ino == ino_) os::remove_name(name_, is_file_);
}

Segment::WriteLock::WriteLock(Segment& s, int wait_ms) : fd_(s.fd_) {
  held_ = os::lock_byte(fd_, os::kWriterByte, wait_ms);
}

Segment::WriteLock::~WriteLock() {
  if (held_) os::unlock_byte(fd_, os::kWriterByte);
}

}  // namespace balance::ctl
