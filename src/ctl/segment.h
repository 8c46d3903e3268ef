// The shared-memory segment holding one instance's core::Table: created by the master, attached
// by `-c`/`-i` clients. POSIX shared memory by default, a memory-mapped file in the run
// directory with -M. An instance is named by its listening port and -b text (ctl/names.h).
//
// Locks (open-file-description byte-range locks on the segment itself, so they vanish with the
// process that holds them, however it dies):
//   byte 0: held by the master for its whole life -- "a master is alive on this segment";
//   byte 1: held by a control client for the duration of one configuration change (WriteLock).
// Readers (show, the workers) never lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/failure.h"
#include "core/table.h"

namespace balance::ctl {

struct InstanceId {
  uint16_t port = 0;
  std::string bind_text;  // -b as written, "" for all addresses
  bool use_mmap = false;  // -M
};

// /var/run/balance for root, else $XDG_RUNTIME_DIR/balance or /tmp/balance-UID;
// $BALANCE_RUNDIR overrides. Not created here.
std::string run_directory();

// Makes a relative $BALANCE_RUNDIR absolute, from the current directory: called at start, before
// a daemon changes to "/", so that a daemon and a later `-c` started in the same place agree.
void settle_run_directory();

// Receives -d trace lines (no trailing newline).
using Trace = std::function<void(const std::string&)>;

// The message and exit code of a client that finds no live master (COMPAT.md).
Failure no_master_failure();
// The message and exit code of a client refused another user's instance (77).
Failure permission_failure(const InstanceId& id);

class Segment {
 public:
  // What a master writes into a fresh table (its channels from the command line).
  using Fill = std::function<void(core::Table&)>;

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Master side: creates a fresh segment for `id` (mode 0600), initialised and filled (`fill`),
  // replacing a stale one; the calling process is then recorded as the master and holds the
  // liveness lock while the Segment exists. Fails (null, `failure` filled) when a live master already holds the name
  // (69), when a stale segment of another user cannot be replaced, the run directory is unsafe
  // or there is no room for the table (73), or on a system error (71).
  static std::unique_ptr<Segment> create(const InstanceId& id, Failure& failure, const Fill& fill = {});
  // Client side: attaches to the running instance's segment. Failures:
  //   69 "no master process, exiting." -- no segment, no live master on it (dead, reused PID,
  //      liveness lock free), or a header not yet written (all-zero magic);
  //   77 "permission denied: balance on <instance> belongs to another user, exiting." -- the
  //      segment or run directory is not ours (EACCES/EPERM or another owner; root may attach);
  //   65 "invalid control segment of balance on <instance>: <why>, exiting." -- wrong size,
  //      magic, layout version or limits;
  //   71 another system error, with its reason.
  static std::unique_ptr<Segment> attach(const InstanceId& id, Failure& failure, const Trace& trace = {});
  // New master after an upgrade in place: takes over the predecessor's segment descriptor `fd`
  // (owned from here on, even on failure; being the same open file description it carries the
  // liveness lock), checks it is a segment of this layout and records the calling process as
  // the master. Fails (null) with 65 when it is not such a segment, 71 on a system error.
  static std::unique_ptr<Segment> adopt(const InstanceId& id, int fd, Failure& failure);

  core::Table& table() { return *table_; }

  // Serializes configuration writers across processes (held for one command). Waits up to
  // `wait_ms` for another writer; check held() before writing.
  class WriteLock {
   public:
    static constexpr int kDefaultWaitMs = 5000;
    explicit WriteLock(Segment& s, int wait_ms = kDefaultWaitMs);
    ~WriteLock();
    WriteLock(const WriteLock&) = delete;
    WriteLock& operator=(const WriteLock&) = delete;
    bool held() const { return held_; }

   private:
    int fd_;
    bool held_ = false;
  };
  // Removes the segment's name if it still names this segment (a newer master's segment under
  // the same name is left alone). The mapping stays valid until destroyed.
  void unlink();

  // Records the calling process as the master (pid and start ticks). create() does it; call it
  // again only if the segment was created before a fork.
  void publish_master();

  // Another process of the owner may truncate the segment's file, and the next access to the
  // pages it cut off faults (SIGBUS). From the mapping on, such a fault ends a client with one
  // line and exit 65. A master calls guard_size() once it serves: the fault handler then puts
  // the size back (the access is retried and reads zeros) and writes 1 to the eventfd `wake`;
  // take_truncation() says once that it happened, for the master to write the table anew.
  void guard_size(int wake);
  bool take_truncation();
  // Master side: writes the table anew, with `fill` run on it before the calling process is
  // recorded as the master: until then no client attaches, so none sees, or changes, a table
  // half written (create(), and a table that was lost).
  void reinitialize(const Fill& fill = {});
  // The master recorded in the header, if it is a live process of the segment's owner that
  // started when the header says and the liveness lock is held; 0 otherwise. With `strict`,
  // it must also have this very segment mapped (checked before signalling it). Safe while an
  // upgrade's new master records itself: the pid and start ticks are read as a pair.
  pid_t live_master(bool strict) const { return live_master_identity(strict).pid; }
  struct MasterIdentity {
    pid_t pid = 0;  // 0: no live master
    uint64_t start_ticks = 0;
    bool operator==(const MasterIdentity&) const = default;
  };
  MasterIdentity live_master_identity(bool strict) const;

  const std::string& name() const { return name_; }  // shm name or file path
  int fd() const { return fd_; }  // to hand to a successor (see adopt()); owned by the Segment
  uid_t owner() const { return owner_; }
  const InstanceId& id() const { return id_; }

 private:
  Segment() = default;
  bool map(Failure& failure);
  bool check_header(Failure& failure, const Trace& trace) const;
  MasterIdentity recorded_master() const;
  bool is_live_master(const MasterIdentity& id, bool strict) const;

  std::string name_;  // shm name or file path
  bool is_file_ = false;
  int fd_ = -1;
  core::Table* table_ = nullptr;
  InstanceId id_;
  uid_t owner_ = 0;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace balance::ctl
