// Fuzzes the control language: every line of the input (split on '\n') is run, in one shell
// session, by ctl::Executor on a heap core::Table with a few groups of each type, as `-i` does.
// After each command a client is chosen the way a worker does it (Selector: next, failed or
// connected, release), so what the commands change (weights, types, maxc, new channels...) is
// also exercised by the selection policy. Checks: replies are newline-terminated and bounded,
// and every connection slot the selection took is given back (every channel's c back to 0).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "core/policy.h"
#include "ctl/executor.h"
#include "ctl/resolve.h"
#include "fuzz_table.h"

namespace {

using balance::core::Table;

// A show of a full table: a header and 32 x 64 rows of well under 200 bytes each.
constexpr size_t kMaxReply = 200 * (1 + balance::core::kMaxGroups * balance::core::kMaxChannels);

void check_all_released(const Table& t) {
  for (uint32_t g = 0; g < balance::core::kMaxGroups; ++g) {
    for (uint32_t c = 0; c < t.channel_count(g); ++c) check(t.groups[g].channels[c].c.load() == 0);
  }
}

// One client through the policy: up to four tries, the `n`th failing when bit n of `fate` is set.
void choose(Table& t, uint32_t client, uint8_t fate) {
  char address[32];
  std::snprintf(address, sizeof address, "10.%u.%u.%u", (client >> 16) & 255, (client >> 8) & 255, client & 255);
  balance::core::Selector selector(t, balance::fuzz::endpoint(address, 40000),
                                   {.hash_failover = (fate & 0x10) != 0, .autodisable = (fate & 0x20) != 0});
  for (int attempt = 0; attempt < 4; ++attempt) {
    const auto pick = selector.next();
    if (!pick) return;
    check(pick->group < balance::core::kMaxGroups && pick->channel < t.channel_count(pick->group));
    if ((fate >> attempt) & 1u) {
      selector.failed(*pick);
      continue;
    }
    selector.connected(*pick);
    balance::core::release(t, pick->group, pick->channel);
    return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Table* table = new Table;
  table->init(1, 0, 0);
  balance::fuzz::fill_sample_table(*table);
  balance::ctl::Executor executor(*table, balance::ctl::resolve_channel_address, balance::ctl::run_unlocked);
  balance::ctl::Session session;

  std::string_view input(reinterpret_cast<const char*>(data), size);
  uint32_t client = 0;
  while (!input.empty()) {
    const size_t nl = input.find('\n');
    const std::string_view line = input.substr(0, nl);
    input = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);

    const balance::ctl::Reply reply = executor.execute(line, session);
    check(reply.out.empty() || reply.out.back() == '\n');
    check(reply.out.size() <= kMaxReply);
    check(session.group < balance::core::kMaxGroups);
    for (const char ch : line) client = client * 31 + static_cast<unsigned char>(ch);
    choose(*table, client, static_cast<uint8_t>(client >> 24));
    check_all_released(*table);
  }
  return 0;
}
