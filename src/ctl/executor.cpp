#include "ctl/executor.h"

#include <utility>

#include "ctl/commands.h"
#include "ctl/format.h"

namespace balance::ctl {
namespace {

const std::string kSyntax = "syntax error\n";
const std::string kRange = "value out of range\n";
const std::string kUnknownChannel = "unknown channel\n";
const std::string kBusy = "control segment busy, try again\n";

constexpr uint64_t kMaxNumber = UINT32_MAX;
constexpr uint64_t kMaxWeight = 1000000;  // as on the command line

// How many arguments each command needs at least (more are ignored, as the classic tool did).
size_t arity(Command command) {
  switch (command) {
    case Command::Disable:
    case Command::Enable:
    case Command::Reset:
    case Command::Group:
      return 1;
    case Command::Maxc:
    case Command::Weight:
    case Command::Create:
    case Command::MrtgBytes:
    case Command::MrtgConns:
      return 2;
    case Command::Assign:
      return 3;
    default:
      return 0;
  }
}

std::string number_error(NumberStatus status) { return status == NumberStatus::Range ? kRange : kSyntax; }

// A channel or group number. Malformed: Syntax. One that is negative or too large names no
// channel or group, like any number past the last one (3.57: "no such channel -1"), so it is
// read as kNoIndex, past every bound, and not as out of range like a value (a maxc) would be.
constexpr uint64_t kNoIndex = UINT64_MAX;
Number parse_index(std::string_view text) {
  const Number n = parse_number(text, kMaxNumber);
  if (n.status == NumberStatus::Range) return {NumberStatus::Ok, kNoIndex};
  return n;
}

// "channel N" for the number typed as `text` and read as `n`: "007" is channel 7; one that
// could not be read (kNoIndex) is named as typed.
std::string channel_label(std::string_view text, const Number& n) {
  return "channel " + (n.value == kNoIndex ? std::string(text) : std::to_string(n.value));
}

std::string resolve_error(ResolveStatus status) {
  return status == ResolveStatus::BadPort ? "invalid port\n" : "invalid address\n";
}

std::string group_label(uint32_t g) { return "group " + std::to_string(g); }

const char* type_words(core::GroupType type) {
  switch (type) {
    case core::GroupType::Hash: return "hash";
    case core::GroupType::LeastConn: return "least connections";
    case core::GroupType::RoundRobin: break;
  }
  return "round robin";
}

}  // namespace

bool run_unlocked(const std::function<void()>& change) {
  change();
  return true;
}

Executor::Executor(core::Table& table, Resolver resolver, WriteSection write)
    : table_(table), resolve_(std::move(resolver)), write_(std::move(write)) {}

Reply Executor::execute(std::string_view line, Session& session) {
  if (line.size() > kMaxLineLength) return {"line too long\n"};
  const std::vector<std::string_view> tokens = tokenize(line);
  if (tokens.empty()) return {};
  const auto command = match_command(tokens[0]);
  if (!command || tokens.size() - 1 < arity(*command)) return {kSyntax};
  const Args args = Args(tokens).subspan(1);
  switch (*command) {
    case Command::Quit: return {"", Action::Quit};
    case Command::Kill: return {"", Action::Kill};
    case Command::Show: return {format_show(table_)};
    case Command::Help: return {format_help()};
    case Command::Version: return {format_version()};
    case Command::Disable: return set_enabled(args, session, false);
    case Command::Enable: return set_enabled(args, session, true);
    case Command::Reset: return reset(args, session);
    case Command::Maxc: return maxc(args, session);
    case Command::Weight: return weight(args, session);
    case Command::Group: return group(args, session);
    case Command::Hash: return set_type(session, core::GroupType::Hash);
    case Command::Rr: return set_type(session, core::GroupType::RoundRobin);
    case Command::Lc: return set_type(session, core::GroupType::LeastConn);
    case Command::Create: return create(args, session);
    case Command::Assign: return assign(args, session);
    case Command::MrtgBytes: return mrtg(args, true);
    case Command::MrtgConns: return mrtg(args, false);
  }
  return {kSyntax};
}

Reply Executor::set_enabled(Args args, const Session& session, bool enable) {
  const Number n = parse_index(args[0]);
  if (n.status != NumberStatus::Ok) return {kSyntax};
  const std::string label = channel_label(args[0], n);
  if (n.value >= table_.channel_count(session.group)) return {"no such " + label + "\n"};
  core::Channel& ch = table_.groups[session.group].channels[n.value];
  uint32_t before = 0;
  // Enabled first, then a member of its hash group's table: a client never meets it as a member
  // that is still disabled.
  const bool locked = write_([&] {
    before = ch.enabled.exchange(enable ? 1 : 0);
    if (enable) ch.hash_pending.store(0, std::memory_order_release);
  });
  if (!locked) return {kBusy};
  const char* state = enable ? "enabled\n" : "disabled\n";
  if ((before != 0) == enable) return {label + " already " + state};
  return {label + " " + state};
}

Reply Executor::reset(Args args, const Session& session) {
  const Number n = parse_index(args[0]);
  if (n.status != NumberStatus::Ok) return {kSyntax};
  const std::string label = channel_label(args[0], n);
  if (n.value >= table_.channel_count(session.group)) return {"no such " + label + "\n"};
  core::Channel& ch = table_.groups[session.group].channels[n.value];
  if (!write_([&] { ch.reset_counters(); })) return {kBusy};
  return {label + " counters reset\n"};
}

Reply Executor::maxc(Args args, const Session& session) {
  const Number n = parse_index(args[0]);
  const Number limit = parse_number(args[1], kMaxNumber);
  if (n.status != NumberStatus::Ok || limit.status == NumberStatus::Syntax) return {kSyntax};
  if (n.value >= table_.channel_count(session.group)) return {kUnknownChannel};
  if (limit.status != NumberStatus::Ok) return {kRange};
  core::Channel& ch = table_.groups[session.group].channels[n.value];
  if (!write_([&] { ch.maxc.store(static_cast<uint32_t>(limit.value), std::memory_order_relaxed); })) return {kBusy};
  return {"maxc of channel " + std::to_string(n.value) + " changed to " + std::to_string(limit.value) + "\n"};
}

Reply Executor::weight(Args args, const Session& session) {
  const Number n = parse_index(args[0]);
  const Number w = parse_number(args[1], kMaxWeight);
  if (n.status != NumberStatus::Ok || w.status == NumberStatus::Syntax) return {kSyntax};
  if (n.value >= table_.channel_count(session.group)) return {kUnknownChannel};
  if (w.status != NumberStatus::Ok || w.value == 0) return {kRange};
  core::Channel& ch = table_.groups[session.group].channels[n.value];
  if (!write_([&] { ch.weight.store(static_cast<uint32_t>(w.value), std::memory_order_relaxed); })) return {kBusy};
  return {"weight of channel " + std::to_string(n.value) + " changed to " + std::to_string(w.value) + "\n"};
}

Reply Executor::group(Args args, Session& session) {
  const Number g = parse_number(args[0], kMaxNumber);
  if (g.status != NumberStatus::Ok) return {number_error(g.status)};
  if (g.value >= core::kMaxGroups) return {kRange};
  session.group = static_cast<uint32_t>(g.value);
  return {};
}

Reply Executor::set_type(const Session& session, core::GroupType type) {
  std::atomic<uint32_t>& slot = table_.groups[session.group].type;
  if (!write_([&] { slot.store(static_cast<uint32_t>(type), std::memory_order_relaxed); })) return {kBusy};
  return {group_label(session.group) + " set to " + type_words(type) + "\n"};
}

Reply Executor::create(Args args, const Session& session) {
  const Resolved target = resolve_(args[0], args[1]);  // before the lock: DNS may be slow
  if (target.status != ResolveStatus::Ok) return {resolve_error(target.status)};
  int index = -1;
  if (!write_([&] { index = table_.append_channel(session.group, target.endpoint, 0, false); })) return {kBusy};
  if (index < 0) return {group_label(session.group) + " is full\n"};
  return {"channel created\n"};
}

Reply Executor::assign(Args args, const Session& session) {
  const Number n = parse_index(args[0]);
  if (n.status != NumberStatus::Ok) return {kSyntax};
  if (n.value >= table_.channel_count(session.group)) return {kUnknownChannel};
  core::Channel& ch = table_.groups[session.group].channels[n.value];
  const std::string must_disable = "channel must be disabled to assign new address\n";
  if (ch.enabled.load(std::memory_order_relaxed) != 0) return {must_disable};
  const Resolved target = resolve_(args[1], args[2]);
  if (target.status != ResolveStatus::Ok) return {resolve_error(target.status)};
  bool still_disabled = false;
  const bool locked = write_([&] {
    // Enabled by another client while we resolved: the address of a live channel stays.
    still_disabled = ch.enabled.load(std::memory_order_relaxed) == 0;
    if (!still_disabled) return;
    // Out of its hash group's table first: the new address's place in it would move other
    // channels' clients while this one cannot take them. It takes its place when enabled.
    ch.hash_pending.store(1, std::memory_order_relaxed);
    ch.set_endpoint(target.endpoint);
  });
  if (!locked) return {kBusy};
  return {still_disabled ? "channel reassigned\n" : must_disable};
}

Reply Executor::mrtg(Args args, bool bytes) {
  const Number g = parse_index(args[0]);
  const Number c = parse_index(args[1]);
  if (g.status != NumberStatus::Ok || c.status != NumberStatus::Ok) return {kSyntax};
  if (g.value >= core::kMaxGroups) return {"unknown group\n"};
  const auto group = static_cast<uint32_t>(g.value);
  if (c.value >= table_.channel_count(group)) return {kUnknownChannel};
  const auto channel = static_cast<uint32_t>(c.value);
  return {bytes ? format_mrtg_bytes(table_, group, channel) : format_mrtg_conns(table_, group, channel)};
}

}  // namespace balance::ctl
