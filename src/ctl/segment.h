// The shared-memory segment holding one instance's core::Table: created by the master, attached
// by `-c`/`-i` clients. POSIX shared memory by default, a memory-mapped file in the run
// directory with -M. An instance is named by its listening port and -b text.
#pragma once

#include <cstdint>
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

class Segment {
 public:
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Master side: creates a fresh, initialised segment for `id` (mode 0600), replacing a stale
  // one. Fills `failure` and returns null on error.
  static std::unique_ptr<Segment> create(const InstanceId& id, Failure& failure);
  // Client side: attaches to the running instance's segment. Failures: no segment or no live
  // master -> 69 "no master process, exiting."; not ours -> 77 with a permission message;
  // wrong magic/layout/size -> a clear message.
  static std::unique_ptr<Segment> attach(const InstanceId& id, Failure& failure);

  core::Table& table() { return *table_; }
  // Serializes configuration writers across processes (held for one command).
  class WriteLock {
   public:
    explicit WriteLock(Segment& s);
    ~WriteLock();
    WriteLock(const WriteLock&) = delete;
    WriteLock& operator=(const WriteLock&) = delete;
   private:
    int fd_;
  };
  // Removes the segment's name (the mapping stays valid until destroyed).
  void unlink();

 private:
  Segment() = default;
  std::string name_;       // shm name or file path
  bool is_file_ = false;
  int fd_ = -1;
  core::Table* table_ = nullptr;
};

}  // namespace balance::ctl
