#include "cli/options.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <span>
#include <string_view>
#include <utility>

#include "cli/argscan.h"
#include "cli/channel_text.h"
#include "cli/values.h"
#include "core/failure.h"
#include "version.h"

namespace balance::cli {

namespace {

enum OptionId {
  kOptIpv6, kOptAutodisable, kOptBind, kOptOutBind, kOptCommand, kOptDebug, kOptForeground, kOptHashFailover,
  kOptInteractive, kOptMmap, kOptPacketDump, kOptConnectTimeout, kOptIdleTimeout, kOptHelp, kOptVersion, kOptThreads,
  kOptGrace, kOptCheck, kOptRise, kOptFall, kOptProxyProtocol, kOptMetrics, kOptLogConns,
  kOptLoopbackCc, kOptCpus,
};

// Every option, in usage-text order. A new option is one row here and one case in apply().
constexpr OptionDef kOptions[] = {
    {kOptIpv6, '6', "", "", "listen on IPv6: -b is resolved as IPv6 (IPv4 as ::ffff:a.b.c.d)"},
    {kOptAutodisable, 'a', "", "", "autodisable: a channel that fails stays disabled until enabled"},
    {kOptBind, 'b', "", "addr", "listen on this local address (default: all, IPv4 and IPv6)"},
    {kOptOutBind, 'B', "", "addr", "connect to the channels from this local address"},
    {kOptCommand, 'c', "", "cmd", "run one control command on the running instance and exit"},
    {kOptDebug, 'd', "", "", "debug: trace configuration, connections and failures (stderr; syslog without -f)"},
    {kOptForeground, 'f', "", "", "stay in the foreground (default: background, log to syslog)"},
    {kOptHashFailover, 'H', "", "", "hash groups fail over to another channel of the group (the next Maglev choice)"},
    {kOptInteractive, 'i', "", "", "interactive control shell for the running instance"},
    {kOptMmap, 'M', "", "", "control through a memory-mapped file instead of shared memory"},
    {kOptPacketDump, 'p', "", "", "packet dump: show all data passing through on stdout"},
    {kOptConnectTimeout, 't', "", "sec", "connect timeout in seconds (default 5)"},
    {kOptIdleTimeout, 'T', "", "sec", "close a connection idle for sec seconds (default: never)"},
    {kOptHelp, 'h', "help", "", "print this help and exit"},
    {kOptVersion, '\0', "version", "", "print the version and exit"},
    {kOptThreads, '\0', "threads", "n", "worker threads, 1..1024 (default: one per CPU balance may use)"},
    {kOptCpus, '\0', "cpus", "list", "a worker pinned to each CPU of list (0-3,8; all: every CPU balance may use)"},
    {kOptGrace, '\0', "grace", "sec", "on SIGTERM, let connections finish for up to sec seconds (default 30)"},
    {kOptCheck, '\0', "check", "sec", "health-check every channel with a TCP connect every sec seconds"},
    {kOptRise, '\0', "rise", "n", "successful checks that mark a channel up (default 2)"},
    {kOptFall, '\0', "fall", "n", "failed checks that mark a channel down (default 3)"},
    {kOptProxyProtocol, '\0', "proxy-protocol", "v1|v2", "send the client's address to channels (PROXY protocol)"},
    {kOptMetrics, '\0', "metrics", "addr:port", "serve Prometheus /metrics, /status.json and a status page"},
    {kOptLogConns, '\0', "log-conns", "", "log one line per finished connection"},
    {kOptLoopbackCc, '\0', "loopback-cc", "name", "congestion control over loopback (default cubic; system: the system's)"},
};

constexpr uint64_t kMaxSeconds = 2147483;  // seconds whose milliseconds still fit an int
constexpr uint64_t kMaxThreads = 1024;
constexpr unsigned kMaxCpus = CPU_SETSIZE;  // the CPUs a cpu_set_t names
constexpr uint64_t kMaxWeight = 1000000;
constexpr size_t kMaxCommandLength = 4096;
constexpr uint64_t kMaxChecks = 1000;  // --rise/--fall
constexpr size_t kMaxCongestionName = 15;  // the kernel's TCP_CA_NAME_MAX, 16 with the NUL

// What the options asked for, gathered before the operands are read.
struct Parser {
  Config cfg;
  bool interactive = false;
  bool command = false;
  bool have_bind = false;
  bool have_out_bind = false;
  std::string out_bind_text;
};

// Set when parsing stops here: the program exits with it.
using Stop = std::optional<ParseOutcome>;

ParseOutcome fail(int code, const std::string& line) {
  ParseOutcome o;
  o.exit_code = code;
  o.err = line + "\n";
  return o;
}

ParseOutcome usage_error(const std::string& line) {
  ParseOutcome o = fail(kExitUsage, line);
  o.err += usage_text();
  return o;
}

ParseOutcome finish(std::string out) {
  ParseOutcome o;
  o.exit_code = kExitOk;
  o.out = std::move(out);
  return o;
}

ParseOutcome bad_address(std::string_view host) {
  return fail(kExitDataErr, "unknown or invalid address [" + printable(host, kMaxHostLength) + "]");
}

// A link-local address without its interface, which no socket can use. `example` shows where
// the interface goes ("fe80::1%<interface>" for -b and -B, "[fe80::1%<interface>]:80" for a
// channel).
ParseOutcome scope_missing(std::string_view host, std::string_view example) {
  return fail(kExitDataErr, "link-local address [" + printable(host, kMaxHostLength) +
                                "] needs its interface: " + printable(example));
}

ParseOutcome scope_missing(std::string_view host) {
  return scope_missing(host, std::string(host) + "%<interface>");
}

std::string flag_name(const OptionDef& d) {
  if (d.short_name != '\0') return std::string("-") + d.short_name;
  return "--" + std::string(d.long_name);
}

// -b and -B take an IPv6 address with or without the brackets a channel needs: "[::1]" is "::1".
// Only an address literal loses them, so the instance's name (-b as written) is the same both ways.
std::string_view unbracketed(std::string_view value) {
  if (value.size() < 3 || value.front() != '[' || value.back() != ']') return value;
  const std::string_view inside = value.substr(1, value.size() - 2);
  const std::string_view address = inside.substr(0, inside.find('%'));
  in6_addr addr{};
  if (address.size() >= INET6_ADDRSTRLEN || inet_pton(AF_INET6, std::string(address).c_str(), &addr) != 1) return value;
  return inside;
}

// A positive number of seconds (or threads) for option `d`, at most `max`.
Stop parse_positive(const OptionDef& d, std::string_view value, uint64_t max, unsigned& out) {
  const auto n = parse_number(value, max);
  if (!n || *n == 0) {
    return usage_error("invalid value [" + printable(value) + "] for " + flag_name(d) + " (1.." +
                       std::to_string(max) + ")");
  }
  out = static_cast<unsigned>(*n);
  return std::nullopt;
}

// --metrics ADDR:PORT, the address as a name, IPv4, or IPv6 in brackets.
Stop parse_metrics(std::string_view value, Config& c) {
  const ChannelText f = split_channel(value);
  const auto port = f.error.empty() && !f.host.empty() && f.maxc.empty() && f.weight.empty() ? parse_port(f.port)
                                                                                           : std::nullopt;
  if (!port) {
    const bool bare_ipv6 = std::count(value.begin(), value.end(), ':') > 1 && value.front() != '[';
    return usage_error("invalid address [" + printable(value) + "] for --metrics (addr:port" +
                       (bare_ipv6 ? ", an IPv6 address in brackets: [::1]:9100)" : ")"));
  }
  c.metrics = resolve_host(f.host, *port, AF_UNSPEC, 0);
  if (!c.metrics) return bad_address(f.host);
  return std::nullopt;
}

// --loopback-cc NAME: an algorithm's name as the kernel spells them ("cubic", "reno", "bbr"), or
// "system". Whether the kernel has it is only known when balance starts serving.
Stop parse_loopback_cc(std::string_view value, Config& c) {
  const bool name_like = !value.empty() && value.size() <= kMaxCongestionName &&
                         std::all_of(value.begin(), value.end(), [](char ch) {
                           return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                                  ch == '_' || ch == '-';
                         });
  if (!name_like) {
    return usage_error("invalid value [" + printable(value) + "] for --loopback-cc (a congestion control " +
                       "algorithm such as cubic or reno, at most 15 letters, digits, - or _; or system)");
  }
  c.loopback_cc = value == "system" ? "" : std::string(value);
  c.loopback_cc_given = true;
  return std::nullopt;
}

// --cpus LIST: CPU numbers as the kernel writes them ("0-3,8"), or "all" (the CPUs balance may
// run on, known only when it starts serving).
Stop parse_cpus(std::string_view value, Config& c) {
  if (value == "all") {
    c.cpus_all = true;
    c.cpus.clear();
    return std::nullopt;
  }
  auto cpus = parse_cpu_list(value, kMaxCpus);
  if (!cpus) {
    return usage_error("invalid value [" + printable(value) + "] for --cpus (CPU numbers 0.." +
                       std::to_string(kMaxCpus - 1) + " and ranges, each once: 0-3,8; or all)");
  }
  c.cpus = std::move(*cpus);
  c.cpus_all = false;
  return std::nullopt;
}

// Applies option `d` (with its argument `value`); stops for --help, --version or a bad value.
Stop apply(Parser& p, const OptionDef& d, std::string_view value) {
  Config& c = p.cfg;
  switch (d.id) {
    case kOptIpv6: c.force_ipv6 = true; break;
    case kOptAutodisable: c.autodisable = true; break;
    case kOptDebug: c.debug = true; break;
    case kOptForeground: c.foreground = true; break;
    case kOptHashFailover: c.hash_failover = true; break;
    case kOptInteractive: p.interactive = true; break;
    case kOptMmap: c.use_mmap = true; break;
    case kOptPacketDump: c.packet_dump = true; break;
    case kOptHelp: return finish(usage_text());
    case kOptVersion: return finish(std::string("balance ") + kVersion + "\n");
    case kOptConnectTimeout: return parse_positive(d, value, kMaxSeconds, c.connect_timeout_s);
    case kOptIdleTimeout: return parse_positive(d, value, kMaxSeconds, c.idle_timeout_s);
    case kOptThreads: return parse_positive(d, value, kMaxThreads, c.threads);
    case kOptCheck: return parse_positive(d, value, kMaxSeconds, c.check_interval_s);
    case kOptRise: return parse_positive(d, value, kMaxChecks, c.rise);
    case kOptFall: return parse_positive(d, value, kMaxChecks, c.fall);
    case kOptLogConns: c.log_conns = true; break;
    case kOptGrace: {
      const auto n = parse_number(value, kMaxSeconds);
      if (!n) return usage_error("invalid value [" + printable(value) + "] for --grace (0.." + std::to_string(kMaxSeconds) + ")");
      c.grace_s = static_cast<unsigned>(*n);
      break;
    }
    case kOptProxyProtocol:
      if (value != "v1" && value != "v2") return usage_error("invalid value [" + printable(value) + "] for --proxy-protocol (v1 or v2)");
      c.proxy_protocol = value == "v1" ? ProxyProtocol::V1 : ProxyProtocol::V2;
      break;
    case kOptMetrics: return parse_metrics(value, c);
    case kOptLoopbackCc: return parse_loopback_cc(value, c);
    case kOptCpus: return parse_cpus(value, c);
    case kOptBind:
      if (value.size() > kMaxHostLength) return bad_address(value);
      c.bind_text = unbracketed(value);
      p.have_bind = true;
      break;
    case kOptOutBind:
      if (value.size() > kMaxHostLength) return bad_address(value);
      p.out_bind_text = unbracketed(value);
      p.have_out_bind = true;
      break;
    case kOptCommand:
      if (value.size() > kMaxCommandLength) {
        return usage_error("control command [" + printable(value) + "] longer than " +
                           std::to_string(kMaxCommandLength) + " characters");
      }
      c.command = value;
      p.command = true;
      break;
  }
  return std::nullopt;
}

// Resolves -b (as IPv6 with -6) and -B for serve mode.
Stop resolve_binds(Parser& p) {
  Config& c = p.cfg;
  if (p.have_bind) {
    const int family = c.force_ipv6 ? AF_INET6 : AF_UNSPEC;
    const int flags = c.force_ipv6 ? AI_V4MAPPED : 0;
    c.bind = resolve_host(c.bind_text, c.port, family, flags);
    if (!c.bind) return bad_address(c.bind_text);
    if (c.bind->lacks_scope()) return scope_missing(c.bind_text);
  }
  if (p.have_out_bind) {
    c.out_bind = resolve_host(p.out_bind_text, 0, AF_UNSPEC, 0);
    if (!c.out_bind) return bad_address(p.out_bind_text);
    if (c.out_bind->lacks_scope()) return scope_missing(p.out_bind_text);
  }
  return std::nullopt;
}

// Parses and resolves one channel `text` into `out`; `listen_port` fills an empty port.
Stop parse_channel_fields(std::string_view text, uint16_t listen_port, ChannelSpec& out) {
  const ChannelText f = split_channel(text);
  if (!f.error.empty()) return fail(kExitUsage, "invalid channel [" + printable(text) + "]: " + f.error);
  uint16_t port = listen_port;
  if (!f.port.empty()) {
    const auto p = parse_port(f.port);
    if (!p) return fail(kExitUsage, "invalid port [" + printable(f.port) + "], exiting.");
    port = *p;
  }
  const auto maxc = f.maxc.empty() ? std::optional<uint64_t>(0) : parse_number(f.maxc, UINT32_MAX);
  if (!maxc) {
    return fail(kExitUsage, "invalid maxc [" + printable(f.maxc) + "] in channel [" + printable(text) +
                                "] (0.." + std::to_string(UINT32_MAX) + ", 0 = unlimited)");
  }
  const auto weight = f.weight.empty() ? std::optional<uint64_t>(1) : parse_number(f.weight, kMaxWeight);
  if (!weight || *weight == 0) {
    return fail(kExitUsage, "invalid weight [" + printable(f.weight) + "] in channel [" + printable(text) +
                                "] (1.." + std::to_string(kMaxWeight) + ")");
  }
  const auto ep = resolve_channel_host(f.host, port);
  if (!ep) return bad_address(f.host);
  if (ep->lacks_scope()) {  // the channel as written, the interface inside its brackets
    const std::string_view after_host = text.substr(text.front() == '[' ? text.find(']') + 1 : f.host.size());
    return scope_missing(f.host, "[" + std::string(f.host) + "%<interface>]" + std::string(after_host));
  }
  out.text = text;
  out.endpoint = *ep;
  out.maxc = static_cast<uint32_t>(*maxc);
  out.weight = static_cast<uint32_t>(*weight);
  return std::nullopt;
}

// The channel `text` as it should have been written when it starts with an IPv6 address without
// brackets: "[2001:db8::1]" for 2001:db8::1, "[fe80::1%eth0]:80" for fe80::1%eth0:80. Without a
// scope nothing tells the address from a port, so all of it goes in the brackets.
std::optional<std::string> bracketed(std::string_view text) {
  const size_t scope = text.find('%');
  const std::string_view address = text.substr(0, scope);
  if (address.empty() || address.front() == '[' || address.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  in6_addr addr{};
  if (inet_pton(AF_INET6, std::string(address).c_str(), &addr) != 1) return std::nullopt;
  const size_t end = scope == std::string_view::npos ? text.size() : std::min(text.find(':', scope), text.size());
  return "[" + std::string(text.substr(0, end)) + "]" + std::string(text.substr(end));
}

// parse_channel_fields(), with a hint when the error comes from a bare IPv6 address: a syntax
// error says where the brackets go; an unresolvable host (fe80::1 reads as host "fe80" with maxc
// 1, and "a::16" may well mean host "a" with maxc 16) keeps the classic message, hint appended.
Stop parse_channel(std::string_view text, uint16_t listen_port, ChannelSpec& out) {
  Stop s = parse_channel_fields(text, listen_port, out);
  if (!s) return s;
  const auto hint = bracketed(text);
  if (!hint) return s;
  if (s->exit_code == kExitUsage) {
    return fail(kExitUsage, "invalid channel [" + printable(text) + "]: IPv6 addresses go in brackets: " +
                                printable(*hint));
  }
  if (s->exit_code == kExitDataErr && s->err.starts_with("unknown or invalid address")) {
    const std::string line = s->err.substr(0, s->err.size() - 1);  // without its newline
    return fail(kExitDataErr, line + " (an IPv6 address goes in brackets: " + printable(*hint) + ")");
  }
  return s;
}

// Adds channel `word` to `group` (number `g`), within the limits.
Stop add_channel(Config& c, GroupSpec& group, std::string_view word) {
  const size_t g = c.groups.size();
  if (g >= core::kMaxGroups) {
    return fail(kExitUsage, "too many groups at [" + printable(word) + "] (at most " +
                                std::to_string(core::kMaxGroups) + ")");
  }
  if (group.channels.size() >= core::kMaxChannels) {
    return fail(kExitUsage, "too many channels in group " + std::to_string(g) + " at [" + printable(word) +
                                "] (at most " + std::to_string(core::kMaxChannels) + ")");
  }
  ChannelSpec spec;
  if (Stop s = parse_channel(word, c.port, spec)) return s;
  group.channels.push_back(std::move(spec));
  return std::nullopt;
}

// The channel words after the port: channels, with "!" and "%" ending groups.
Stop parse_groups(Config& c, std::span<const char* const> words) {
  GroupSpec current;
  for (const char* w : words) {
    const std::string_view word = w != nullptr ? w : "";
    if (word == "!" || word == "%" || word == "@") {
      if (current.channels.empty()) return fail(kExitUnavailable, "no channels in group");
      current.type = word == "%"   ? core::GroupType::Hash
                     : word == "@" ? core::GroupType::LeastConn
                                   : core::GroupType::RoundRobin;
      c.groups.push_back(std::move(current));
      current = GroupSpec{};
      continue;
    }
    if (Stop s = add_channel(c, current, word)) return s;
  }
  if (!current.channels.empty()) c.groups.push_back(std::move(current));
  if (c.groups.empty()) return usage_error("no channel given");
  return std::nullopt;
}

// An operand after the port that looks like an option: options must come first (no permuting).
Stop misplaced_option(std::span<const char* const> after_port) {
  for (const char* w : after_port) {
    const std::string_view word = w != nullptr ? w : "";
    if (word.size() > 1 && word[0] == '-') {
      return usage_error("option [" + printable(word) + "] must come before the port");
    }
  }
  return std::nullopt;
}

// Checks the mode options and the operands, and finishes the Config.
ParseOutcome parse_operands(Parser& p, std::span<const char* const> operands) {
  Config& c = p.cfg;
  if (p.interactive && p.command) return usage_error("options [-i] and [-c] cannot be combined");
  c.mode = p.interactive ? Mode::Interactive : p.command ? Mode::Command : Mode::Serve;
  if (operands.empty()) return usage_error("missing port");
  const std::string_view port_text = operands[0] != nullptr ? operands[0] : "";
  const auto port = parse_port(port_text);
  if (!port) return fail(kExitUsage, "invalid port [" + printable(port_text) + "], exiting.");
  c.port = *port;
  if (Stop s = misplaced_option(operands.subspan(1))) return *s;
  if (c.mode != Mode::Serve) {
    if (operands.size() > 1) {
      const std::string_view extra = operands[1] != nullptr ? operands[1] : "";
      return usage_error("unexpected channel [" + printable(extra) + "]: " +
                         (p.interactive ? "-i" : "-c") + " takes only a port");
    }
  } else {
    if (!c.cpus.empty()) {
      if (c.threads != 0 && c.threads != c.cpus.size()) {
        return usage_error("--threads " + std::to_string(c.threads) + " and --cpus with " +
                           std::to_string(c.cpus.size()) + " CPUs disagree (one worker per CPU)");
      }
      c.threads = static_cast<unsigned>(c.cpus.size());
    }
    if (Stop s = resolve_binds(p)) return *s;
    if (Stop s = parse_groups(c, operands.subspan(1))) return *s;
  }
  ParseOutcome ok;
  ok.config = std::move(c);
  return ok;
}

// "  -t sec", "  -h, --help", "      --threads n": the left column of an option's usage line.
std::string option_label(const OptionDef& d) {
  std::string s = "  ";
  if (d.short_name != '\0') {
    s += '-';
    s += d.short_name;
    if (!d.long_name.empty()) s += ", ";
  } else {
    s += "    ";
  }
  if (!d.long_name.empty()) s += "--" + std::string(d.long_name);
  if (!d.arg_name.empty()) s += " " + std::string(d.arg_name);
  return s;
}

}  // namespace

ParseOutcome parse(int argc, const char* const* argv) {
  Parser p;
  ArgScanner scan(argc, argv, kOptions);
  for (;;) {
    const ScanItem item = scan.next();
    if (item.kind == ScanItem::Kind::End) break;
    if (item.kind == ScanItem::Kind::Error) return usage_error(item.error);
    if (Stop s = apply(p, *item.option, item.value)) return *s;
  }
  const int first = scan.operand_index();
  if (argc <= first) return parse_operands(p, {});
  return parse_operands(p, std::span<const char* const>(argv + first, static_cast<size_t>(argc - first)));
}

std::string usage_text() {
  std::string u = std::string("balance ") + kVersion + ": a TCP proxy with load balancing and failover\n\n";
  u +=
      "usage:\n"
      "  balance [-b addr] [-B addr] [-t sec] [-T sec] [-adfpHM6] [--long-option ...] port\n"
      "          host1[:port1[:maxc1[:weight1]]] [!|%|@] ... hostN[:portN[:maxcN[:weightN]]]\n"
      "  balance [-b addr] -i [-d] [-M] port\n"
      "  balance [-b addr] -c cmd [-d] [-M] port\n\noptions:\n";
  for (const OptionDef& d : kOptions) {
    std::string line = option_label(d);
    if (line.size() >= 20) line += "\n";  // a long label: its help on the next line, in the column
    line.resize(line.size() < 20 ? 20 : line.size() + 20, ' ');
    u += line + std::string(d.help) + "\n";
  }
  u +=
      "\nchannels (host[:port[:maxc[:weight]]]):\n"
      "  host              a host name or IPv4 address, or an IPv6 address in brackets: [::1]\n"
      "  port              a number or a service name; empty or missing: the listening port\n"
      "  maxc              most connections at a time on the channel, 0 = unlimited (default)\n"
      "  weight            the channel's weight in its group, 1.." + std::to_string(kMaxWeight) + " (default 1)\n"
      "  !                 ends a group of channels and makes it round robin\n"
      "  %                 ends a group of channels and makes it hash by client address\n"
      "  @                 ends a group of channels and makes it least connections\n"
      "  Groups are tried in order; the next only when no channel of a group can be used.\n"
      "\nexamples:\n"
      "  balance smtp mailhost1:smtp mailhost2:25 mailhost3\n"
      "  balance -fp imap mailserver\n"
      "  balance imap mailserver1::16 ! mailserver2\n"
      "  balance -b ::1 8080 [2001:db8::10]:80 [2001:db8::11]:80:100\n"
      "  balance -c show 8080\n";
  return u;
}

}  // namespace balance::cli
