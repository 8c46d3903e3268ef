// Fuzzes a corrupted or forged control segment. Once, this process creates a real segment as a
// master does (-M: a mapped file in a private run directory; it holds the liveness lock) and
// keeps an image of its valid table. For each input: the image is restored, the input's patches
// are written over it (header, group or channel fields, or anywhere), then
//   - a control client attaches (Segment::attach: header checks, liveness, ownership) and, if it
//     is let in, runs show and every other command through its write lock, as `-c` does;
//   - the master side reads the same table as its workers and HTTP threads do: clients chosen by
//     the selection policy (next, failed, connected, release) with and without -H and -a, and,
//     when built with src/metrics, the snapshot with its Prometheus and JSON expositions.
// Checks: nothing crashes or hangs, every slot the policy takes is given back.
//
// Input: a sequence of patches, each `kind, a, b, c, length, bytes[length]`:
//   kind % 4 == 0: header byte (a % 128)             kind % 4 == 1: group (a % 4) byte (b % 64)
//   kind % 4 == 2: channel (a % 4, b % 8) byte (c % 128)   kind % 4 == 3: any byte (a, b, c: 24 bits)
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/policy.h"
#include "ctl/executor.h"
#include "ctl/segment.h"
#include "fuzz_table.h"
#ifdef BALANCE_FUZZ_METRICS
#include "metrics/prometheus.h"
#include "metrics/snapshot.h"
#include "metrics/status_json.h"
#endif

namespace {

using balance::core::Table;

struct Master {
  balance::ctl::InstanceId id;
  std::unique_ptr<balance::ctl::Segment> segment;
  std::vector<unsigned char> image;  // the valid table
};

// The process's master segment, created on first use.
Master& master() {
  static Master* m = [] {
    auto* made = new Master;
    char dir[] = "/tmp/balance-fuzz-XXXXXX";
    check(::mkdtemp(dir) != nullptr);
    ::setenv("BALANCE_RUNDIR", dir, 1);
    made->id = {static_cast<uint16_t>(1 + ::getpid() % 60000), "", true};
    balance::Failure failure;
    made->segment = balance::ctl::Segment::create(made->id, failure);
    if (!made->segment) {
      std::fprintf(stderr, "fuzz_segment: cannot create the segment: %s\n", failure.message.c_str());
      std::abort();
    }
    balance::fuzz::fill_sample_table(made->segment->table());
    const auto* bytes = reinterpret_cast<const unsigned char*>(&made->segment->table());
    made->image.assign(bytes, bytes + sizeof(Table));
    std::atexit([] { master().segment->unlink(); });
    return made;
  }();
  return *m;
}

constexpr size_t kHeaderSize = sizeof(balance::core::Header);
constexpr size_t kGroupBase = offsetof(Table, groups);
constexpr size_t kChannelBase = offsetof(balance::core::Group, channels);

size_t patch_offset(balance::fuzz::Reader& in) {
  const uint8_t kind = in.byte(), a = in.byte(), b = in.byte(), c = in.byte();
  const size_t group = kGroupBase + (a % 4) * sizeof(balance::core::Group);
  switch (kind % 4) {
    case 0: return a % kHeaderSize;
    case 1: return group + b % kChannelBase;
    case 2: return group + kChannelBase + (b % 8) * sizeof(balance::core::Channel) + c % sizeof(balance::core::Channel);
    default: return ((size_t{a} << 16) | (size_t{b} << 8) | c) % sizeof(Table);
  }
}

void apply_patches(unsigned char* table, balance::fuzz::Reader& in) {
  while (in.left() >= 5) {
    const size_t offset = patch_offset(in);
    const std::string_view bytes = in.bytes(in.byte());
    const size_t n = std::min(bytes.size(), sizeof(Table) - offset);
    std::memcpy(table + offset, bytes.data(), n);
  }
}

// What `-c` does for each command, through the attached segment and its writers' lock.
void run_client(const Master& m) {
  balance::Failure failure;
  auto seg = balance::ctl::Segment::attach(m.id, failure);
  if (!seg) {
    check(failure.exit_code == 65 || failure.exit_code == 69);
    check(!failure.message.empty() && failure.message.find('\n') == std::string::npos);
    return;
  }
  balance::ctl::Segment& s = *seg;
  balance::ctl::Executor executor(
      s.table(), [](std::string_view, std::string_view) { return balance::ctl::Resolved{}; },
      [&s](const std::function<void()>& change) {
        const balance::ctl::Segment::WriteLock lock(s, 0);
        if (!lock.held()) return false;
        change();
        return true;
      });
  static const char* const kCommands[] = {
      "show", "mrtg-bytes 0 0", "mrtg-conns 1 2", "mrtg-bytes 31 63", "disable 0", "enable 1", "maxc 2 5",
      "weight 1 3", "reset 0", "group 1", "show", "hash", "lc", "rr", "group 31", "enable 63", "assign 0 h p",
      "create h p", "show"};
  balance::ctl::Session session;
  for (const char* command : kCommands) {
    const balance::ctl::Reply reply = executor.execute(command, session);
    check(reply.out.empty() || reply.out.back() == '\n');
  }
  // The header still names a live process of ours that started when it says (a forged pid can
  // name one of this process's threads: same owner, same start time).
  check(s.live_master(false) != 0);
}

// Clients chosen as the workers choose them; every slot taken is given back.
void run_policy(Table& t) {
  uint32_t before[balance::core::kMaxGroups][balance::core::kMaxChannels];
  for (uint32_t g = 0; g < balance::core::kMaxGroups; ++g) {
    for (uint32_t c = 0; c < balance::core::kMaxChannels; ++c) before[g][c] = t.groups[g].channels[c].c.load();
  }
  for (uint32_t client = 0; client < 8; ++client) {
    const std::string address = "192.0.2." + std::to_string(client);
    balance::core::Selector selector(t, balance::fuzz::endpoint(address.c_str(), 5000),
                                     {.hash_failover = (client & 1) != 0, .autodisable = (client & 2) != 0});
    for (uint32_t attempt = 0; attempt < 3; ++attempt) {
      const auto pick = selector.next();
      if (!pick) break;
      check(pick->group < balance::core::kMaxGroups && pick->channel < t.channel_count(pick->group));
      if (((client >> 2) + attempt) % 2 == 0) {
        selector.failed(*pick);
        continue;
      }
      selector.connected(*pick);
      balance::core::release(t, pick->group, pick->channel);
      break;
    }
  }
  for (uint32_t g = 0; g < balance::core::kMaxGroups; ++g) {
    for (uint32_t c = 0; c < balance::core::kMaxChannels; ++c) check(t.groups[g].channels[c].c.load() == before[g][c]);
  }
}

void run_metrics([[maybe_unused]] const Table& t) {
#ifdef BALANCE_FUZZ_METRICS
  const auto snap = balance::metrics::take_snapshot(t, 0);
  const std::string prometheus = balance::metrics::format_prometheus(snap);
  const std::string json = balance::metrics::format_status_json(snap);
  check(!prometheus.empty() && json.back() == '\n');
#endif
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Master& m = master();
  auto* table = reinterpret_cast<unsigned char*>(&m.segment->table());
  std::memcpy(table, m.image.data(), m.image.size());
  balance::fuzz::Reader in(data, size);
  apply_patches(table, in);
  run_client(m);
  run_policy(m.segment->table());
  run_metrics(m.segment->table());
  return 0;
}
