// Fuzzes the command line: the input, split on NUL bytes, is argv[1..] of `balance`, parsed by
// cli::parse() as main() does. Host names resolve offline (offline_resolver.cpp: numeric hosts
// and localhost only). Checks what a user can rely on: a Config only with exit code 0 and within
// the table's limits; otherwise a documented exit code and a message that is one bounded line of
// printable text (the usage text may follow it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/options.h"
#include "core/table.h"
#include "fuzz_table.h"

namespace {

constexpr size_t kMaxArgs = 64;
// A one-line message never echoes unbounded input: printable() shows at most 255 bytes of a host
// (80 of anything else), each as at most 4 characters (\xNN), and a message quotes two at most.
constexpr size_t kMaxMessageLine = 2048;

// The first line of `err` is short and printable; any further lines are the usage text.
void check_message(const std::string& err) {
  const size_t nl = err.find('\n');
  check(nl != std::string::npos);  // every message ends its line
  check(nl <= kMaxMessageLine);
  for (size_t i = 0; i < nl; ++i) {
    const auto ch = static_cast<unsigned char>(err[i]);
    check(ch >= 0x20 && ch < 0x7F);
  }
  if (nl + 1 < err.size()) check(err.compare(nl + 1, std::string::npos, balance::cli::usage_text()) == 0);
}

void check_config(const balance::cli::Config& c) {
  check(c.port != 0);
  if (c.mode != balance::cli::Mode::Serve) return;
  if (!c.cpus.empty()) {  // one worker per CPU named, each named once, each a cpu_set_t can hold
    check(c.threads == c.cpus.size() && !c.cpus_all);
    std::vector<bool> seen(1024);
    for (const unsigned cpu : c.cpus) {
      check(cpu < seen.size() && !seen[cpu]);
      seen[cpu] = true;
    }
  }
  check(!c.groups.empty() && c.groups.size() <= balance::core::kMaxGroups);
  for (const auto& g : c.groups) {
    check(!g.channels.empty() && g.channels.size() <= balance::core::kMaxChannels);
    for (const auto& ch : g.channels) check(ch.endpoint.valid() && ch.weight >= 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> words{"balance"};
  std::string current;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      words.push_back(current);
      current.clear();
      if (words.size() > kMaxArgs) return 0;
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  words.push_back(current);
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  argv.push_back(nullptr);

  const balance::cli::ParseOutcome o = balance::cli::parse(static_cast<int>(words.size()), argv.data());
  if (o.config) {
    check(o.exit_code == 0 && o.err.empty() && o.out.empty());
    check_config(*o.config);
  } else if (o.exit_code == 0) {
    check(!o.out.empty() && o.err.empty());  // --help or --version
  } else {
    check(o.exit_code == 64 || o.exit_code == 65 || o.exit_code == 69);
    check_message(o.err);
  }
  return 0;
}
