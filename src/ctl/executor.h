// Runs one control command line against a channel table and returns its exact output text
// (COMPAT.md, "Control commands"). No I/O: name resolution and the writers' lock are passed in,
// so the whole language is tested on a heap table. `kill` and `quit` are only recognised here;
// the caller (ctl/control.h) carries them out.
//
// Threading: one Executor per control client, used from one thread. The table may be shared
// with a running master: everything read from it is clamped, every change is one atomic store
// (or a seqlock'ed endpoint write) made inside the WriteSection.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "core/endpoint.h"
#include "core/table.h"

namespace balance::ctl {

// What a shell keeps between commands.
struct Session {
  uint32_t group = 0;  // the current group, < core::kMaxGroups
};

enum class Action { None, Quit, Kill };

struct Reply {
  std::string out;  // exact output, each line ending in '\n'; empty for no output
  Action action = Action::None;
};

enum class ResolveStatus { Ok, BadHost, BadPort };
struct Resolved {
  ResolveStatus status = ResolveStatus::BadHost;
  core::Endpoint endpoint;
};
// Turns the HOST and PORT of `create`/`assign` into an endpoint (may block on DNS).
using Resolver = std::function<Resolved(std::string_view host, std::string_view port)>;

// Runs `change` while holding the writers' lock; false (change not run) if the lock could not
// be had in time.
using WriteSection = std::function<bool(const std::function<void()>& change)>;

// A WriteSection for a table nobody else writes (tests, single-process use).
bool run_unlocked(const std::function<void()>& change);

class Executor {
 public:
  Executor(core::Table& table, Resolver resolver, WriteSection write);

  // Parses and runs one line (any bytes, any length) in `session`.
  Reply execute(std::string_view line, Session& session);

 private:
  using Args = std::span<const std::string_view>;
  Reply set_enabled(Args args, const Session& session, bool enable);
  Reply reset(Args args, const Session& session);
  Reply maxc(Args args, const Session& session);
  Reply weight(Args args, const Session& session);
  Reply group(Args args, Session& session);
  Reply set_type(const Session& session, core::GroupType type);
  Reply create(Args args, const Session& session);
  Reply assign(Args args, const Session& session);
  Reply mrtg(Args args, bool bytes);

  core::Table& table_;
  Resolver resolve_;
  WriteSection write_;
};

}  // namespace balance::ctl
