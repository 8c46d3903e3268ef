#include "ctl/proc.h"

#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace balance::ctl {
namespace {

constexpr size_t kMaxStatLine = 4096;

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string text(kMaxStatLine, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

// Fields 3.. of /proc/<pid>/stat: after the last ')' (the command name may hold anything).
bool parse_stat(const std::string& stat, ProcessInfo& info) {
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(stat.substr(close + 1));
  std::string state;
  if (!(fields >> state) || state.size() != 1) return false;
  info.state = state[0];
  std::string skip;
  for (int field = 4; field < 22; ++field) {
    if (!(fields >> skip)) return false;
  }
  return static_cast<bool>(fields >> info.start_ticks);
}

bool parse_uids(pid_t pid, ProcessInfo& info) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long real = 0;
    unsigned long effective = 0;
    if (std::sscanf(line.c_str(), "Uid: %lu %lu", &real, &effective) == 2) {
      info.uid = static_cast<uid_t>(real);
      info.euid = static_cast<uid_t>(effective);
      return true;
    }
  }
  return false;
}

}  // namespace

std::optional<ProcessInfo> read_process(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const auto stat = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  ProcessInfo info;
  if (!stat || !parse_stat(*stat, info) || !parse_uids(pid, info)) return std::nullopt;
  return info;
}

uint64_t own_start_ticks() {
  const auto self = read_process(::getpid());
  return self ? self->start_ticks : 0;
}

bool same_process_running(pid_t pid, uint64_t start_ticks) {
  const auto info = read_process(pid);
  return info && info->running() && info->start_ticks == start_ticks;
}

bool maps_file(pid_t pid, dev_t dev, ino_t ino) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long lo = 0, hi = 0, offset = 0, inode = 0;
    unsigned dev_major = 0, dev_minor = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu", &lo, &hi, perms, &offset, &dev_major,
                    &dev_minor, &inode) != 7) {
      continue;
    }
    if (inode == ino && dev_major == major(dev) && dev_minor == minor(dev)) return true;
  }
  return false;
}

}  // namespace balance::ctl
