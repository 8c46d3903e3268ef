// Where messages go: stderr in the foreground, syslog once daemonized. -d adds a trace on stderr.
// Thread-safe; not for the per-byte path.
#pragma once

#include <cstdarg>
#include <string_view>

namespace balance::log {

enum class Level { Error, Warning, Notice, Info, Debug };

// Call once at start. `to_syslog` switches errors/notices to syslog (after daemonizing).
void init(bool to_syslog, bool debug);
bool debug_enabled();

// Writes all of `text` to `fd`: retries after EINTR and short writes, waits (poll) while a
// non-blocking descriptor is full, gives up on any other error (a broken stdout or stderr must not
// stop the proxy, and there is nowhere to report it). Callers serialize their own writers.
void write_fully(int fd, std::string_view text);

// printf-style message at `level`. Debug messages go to stderr only with -d.
void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define BALANCE_DEBUG(...) \
  do { if (::balance::log::debug_enabled()) ::balance::log::write(::balance::log::Level::Debug, __VA_ARGS__); } while (0)

}  // namespace balance::log
