// The system calls behind ctl::Segment: naming, opening, run directory checks, byte locks.
// Internal to ctl; every function reports errno-style results and never throws.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "core/failure.h"
#include "ctl/segment.h"

namespace balance::ctl::os {

inline constexpr off_t kLivenessByte = 0;  // held by the master
inline constexpr off_t kWriterByte = 1;    // held by one configuration writer

// Where the segment of `id` lives: "/balance.<...>" (shm) or "<run dir>/balance.<...>" (-M).
std::string segment_name(const InstanceId& id);

// Creates the run directory (0700) if missing and checks it is a real directory of ours that
// nobody else can write. Fails with 73.
bool ensure_run_directory(const std::string& dir, Failure& failure);

// Opens an existing segment read-write, no symlinks followed; -1 with errno set on failure.
int open_existing(const std::string& name, bool is_file);
// Creates a new segment exclusively, mode 0600; -1 with errno set on failure.
int create_exclusive(const std::string& name, bool is_file);
// Removes the name; 0 or -1 with errno set.
int remove_name(const std::string& name, bool is_file);
// What the name refers to now, without opening it (no descriptor needed); false if nothing.
bool stat_name(const std::string& name, bool is_file, struct stat& st);

// Takes a write lock on one byte of `fd` (open file description lock). With `wait_ms` > 0,
// retries until it is free or the time is up.
bool lock_byte(int fd, off_t byte, int wait_ms);
void unlock_byte(int fd, off_t byte);
// True when another open file description holds a lock on `byte`.
bool byte_locked_elsewhere(int fd, off_t byte);

}  // namespace balance::ctl::os
