// Where messages go: stderr in the foreground, syslog once daemonized. -d adds a trace.
// Thread-safe; not for the per-byte path.
//
// Once init() has run, write() never waits for the sink: it formats the line and appends it to a
// bounded in-memory queue (kQueueBytes), which one logger thread writes out in order (the
// blocking stderr write or syslog(3) send happens there). When the queue is full the line is
// dropped and counted; once the sink takes lines again, the logger writes
// "balance: N log lines dropped (the log reader was not keeping up)" where they were missing.
// Before init() (and after shutdown()) write() writes directly, as a single-threaded start-up can.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace balance::log {

enum class Level { Error, Warning, Notice, Info, Debug };

// How much queued text (plus a small per-line overhead) write() holds before dropping lines.
inline constexpr size_t kQueueBytes = size_t{1} << 20;

// Call at start, after any fork (daemonizing), with the standard descriptors in place: starts the
// logger thread. `to_syslog` switches messages to syslog (after daemonizing). Calling it again
// changes the settings only (and looks again whether stderr is stdout).
void init(bool to_syslog, bool debug);
bool debug_enabled();

// Waits until every line queued so far is written, or until the sink has taken nothing for about
// a second (a reader that stopped must not hold up an exit). True when everything was written.
// For paths that print on stderr themselves (fatal errors) and must keep the order.
bool flush();

// At exit: flush(), then stops the logger thread (left blocked in its write if the sink never
// drained; exiting ends it). Later messages are written directly.
void shutdown();

// Lines dropped since start because the queue was full.
uint64_t dropped_lines();

// Lines written to stderr since start that did not reach it whole: the write failed part way or
// at once (a full disk, a file size limit, a broken pipe). syslog(3) reports no failure, so a
// line sent there is never counted.
uint64_t lost_lines();

// Writes all of `text` to `fd`: retries after EINTR and short writes, waits (poll) while a
// non-blocking descriptor is full, gives up on any other error (a broken stdout or stderr must not
// stop the proxy, and there is nowhere to report it). Callers serialize their own writers.
// Returns how many bytes were written (less than all of `text` after an error).
size_t write_fully(int fd, std::string_view text);

// Writes all of `text` to stdout (write_fully()) as one piece: never mixed with another piece
// written by this function, nor, when stdout and stderr are the same file or pipe (`2>&1`), with a
// log line (a write to a pipe larger than PIPE_BUF is not atomic). `text` ends in a newline; after
// a piece cut short by a failed write (a full disk), the next starts with one. For the -p dump.
void write_stdout(std::string_view text);

// printf-style message at `level`. Debug messages are written only with -d.
void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define BALANCE_DEBUG(...) \
  do { if (::balance::log::debug_enabled()) ::balance::log::write(::balance::log::Level::Debug, __VA_ARGS__); } while (0)

}  // namespace balance::log
