// cli::parse: every command-line form of COMPAT.md, its exact messages and exit codes, and
// malformed input of every kind. Name resolution uses only /etc/hosts names and literals
// (localhost = 127.0.0.1) and the reserved .invalid domain.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/argscan.h"
#include "cli/channel_text.h"
#include "cli/options.h"
#include "cli/values.h"
#include "version.h"

namespace balance::cli {
namespace {

ParseOutcome run(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"balance"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  return parse(static_cast<int>(argv.size() - 1), argv.data());
}

// The config of a run that must succeed.
Config ok(const std::vector<std::string>& args) {
  ParseOutcome o = run(args);
  EXPECT_TRUE(o.config.has_value()) << "args failed: " << o.err;
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.err, "");
  return o.config.value_or(Config{});
}

core::Endpoint v4(const char* text, uint16_t port) { return core::Endpoint::from_numeric(text, port).value(); }

core::Endpoint v6(const char* text, uint16_t port) { return core::Endpoint::from_numeric(text, port).value(); }

// A usage error: exit 64, `first_line` then the usage text on stderr, nothing on stdout.
void expect_usage(const std::vector<std::string>& args, const std::string& first_line) {
  const ParseOutcome o = run(args);
  EXPECT_FALSE(o.config.has_value());
  EXPECT_EQ(o.exit_code, 64);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, first_line + "\n" + usage_text());
}

// A one-line error: exit `code`, exactly `line` and a newline on stderr.
void expect_error(const std::vector<std::string>& args, int code, const std::string& line) {
  const ParseOutcome o = run(args);
  EXPECT_FALSE(o.config.has_value());
  EXPECT_EQ(o.exit_code, code);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, line + "\n");
}

TEST(CliParse, MinimalServeHasClassicDefaults) {
  // `balance 80 localhost`: one round-robin group, one channel on the listening port, defaults.
  const Config c = ok({"80", "localhost"});
  EXPECT_EQ(c.mode, Mode::Serve);
  EXPECT_EQ(c.port, 80);
  EXPECT_EQ(c.bind_text, "");
  EXPECT_FALSE(c.bind.has_value());
  EXPECT_FALSE(c.out_bind.has_value());
  EXPECT_EQ(c.connect_timeout_s, 5u);
  EXPECT_EQ(c.idle_timeout_s, 0u);
  EXPECT_EQ(c.threads, 0u);
  EXPECT_FALSE(c.autodisable || c.debug || c.foreground || c.packet_dump || c.hash_failover ||
               c.use_mmap || c.force_ipv6);
  ASSERT_EQ(c.groups.size(), 1u);
  EXPECT_EQ(c.groups[0].type, core::GroupType::RoundRobin);
  ASSERT_EQ(c.groups[0].channels.size(), 1u);
  const ChannelSpec& ch = c.groups[0].channels[0];
  EXPECT_EQ(ch.text, "localhost");
  EXPECT_EQ(ch.endpoint, v4("127.0.0.1", 80));
  EXPECT_EQ(ch.maxc, 0u);
  EXPECT_EQ(ch.weight, 1u);
}

TEST(CliParse, EveryFlagCombinedInOneWord) {
  // -adfpHM6 in one cluster sets every flag.
  const Config c = ok({"-adfpHM6", "80", "localhost"});
  EXPECT_TRUE(c.autodisable && c.debug && c.foreground && c.packet_dump && c.hash_failover &&
              c.use_mmap && c.force_ipv6);
}

TEST(CliParse, FlagsSeparateAndClustered) {
  // -f -p and -fp and -fdp mean the same as their letters.
  const Config a = ok({"-f", "-p", "80", "localhost"});
  EXPECT_TRUE(a.foreground && a.packet_dump);
  EXPECT_FALSE(a.debug);
  const Config b = ok({"-fdp", "80", "localhost"});
  EXPECT_TRUE(b.foreground && b.debug && b.packet_dump);
}

TEST(CliParse, OptionArgumentsAttachedOrSeparate) {
  // -t5 and -t 5, -b127.0.0.1 and -b 127.0.0.1 are the same; a cluster may end in one.
  const Config a = ok({"-t5", "-T9", "-b127.0.0.1", "-B127.0.0.1", "80", "localhost"});
  const Config b = ok({"-t", "5", "-T", "9", "-b", "127.0.0.1", "-B", "127.0.0.1", "80", "localhost"});
  for (const Config& c : {a, b}) {
    EXPECT_EQ(c.connect_timeout_s, 5u);
    EXPECT_EQ(c.idle_timeout_s, 9u);
    EXPECT_EQ(c.bind_text, "127.0.0.1");
    EXPECT_EQ(c.bind, v4("127.0.0.1", 80));
    EXPECT_EQ(c.out_bind, v4("127.0.0.1", 0));
  }
  const Config d = ok({"-fdt7", "80", "localhost"});
  EXPECT_TRUE(d.foreground && d.debug);
  EXPECT_EQ(d.connect_timeout_s, 7u);
  const Config e = ok({"-ft", "7", "80", "localhost"});
  EXPECT_EQ(e.connect_timeout_s, 7u);
}

TEST(CliParse, DoubleDashEndsOptions) {
  // `--` ends the options; what follows is the port even if it starts with '-'.
  const Config c = ok({"-f", "--", "80", "localhost"});
  EXPECT_TRUE(c.foreground);
  EXPECT_EQ(c.port, 80);
  expect_error({"--", "-1", "localhost"}, 64, "invalid port [-1], exiting.");
}

TEST(CliParse, HelpPrintsUsageOnStdout) {
  // -h and --help print the usage text on stdout and exit 0, whatever follows.
  for (const char* flag : {"-h", "--help"}) {
    const ParseOutcome o = run({flag, "-x", "notaport"});
    EXPECT_FALSE(o.config.has_value());
    EXPECT_EQ(o.exit_code, 0);
    EXPECT_EQ(o.out, usage_text());
    EXPECT_EQ(o.err, "");
  }
  EXPECT_EQ(run({"-fh"}).out, usage_text());
}

TEST(CliParse, VersionPrintsTheVersion) {
  // --version prints "balance <version>" on stdout and exits 0.
  const ParseOutcome o = run({"--version"});
  EXPECT_FALSE(o.config.has_value());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.out, std::string("balance ") + kVersion + "\n");
  EXPECT_EQ(o.err, "");
}

TEST(CliParse, ThreadsLongOptionBothForms) {
  // --threads N and --threads=N set the worker count, 1..1024.
  EXPECT_EQ(ok({"--threads", "4", "80", "localhost"}).threads, 4u);
  EXPECT_EQ(ok({"--threads=8", "80", "localhost"}).threads, 8u);
  EXPECT_EQ(ok({"--threads=1", "80", "localhost"}).threads, 1u);
  EXPECT_EQ(ok({"--threads=1024", "80", "localhost"}).threads, 1024u);
  expect_usage({"--threads=0", "80", "localhost"}, "invalid value [0] for --threads (1..1024)");
  expect_usage({"--threads", "1025", "80", "localhost"}, "invalid value [1025] for --threads (1..1024)");
  expect_usage({"--threads=", "80", "localhost"}, "invalid value [] for --threads (1..1024)");
  expect_usage({"--threads", "x", "80", "localhost"}, "invalid value [x] for --threads (1..1024)");
  expect_usage({"--threads"}, "option [--threads] needs an argument");
}

TEST(CliParse, CpusPinOneWorkerToEachCpuInTheOrderGiven) {
  // --cpus LIST: ranges expanded in the order written; the worker count follows.
  const Config c = ok({"--cpus", "3,0-1", "80", "localhost"});
  EXPECT_EQ(c.cpus, (std::vector<unsigned>{3, 0, 1}));
  EXPECT_EQ(c.threads, 3u);
  EXPECT_FALSE(c.cpus_all);
  EXPECT_EQ(ok({"--cpus=1023", "80", "localhost"}).cpus, std::vector<unsigned>{1023});
  EXPECT_EQ(ok({"--threads", "2", "--cpus", "4-5", "80", "localhost"}).threads, 2u);
  // all: resolved when balance starts serving (the affinity mask); the thread count waits too.
  const Config all = ok({"--cpus", "all", "80", "localhost"});
  EXPECT_TRUE(all.cpus_all);
  EXPECT_TRUE(all.cpus.empty());
  EXPECT_EQ(all.threads, 0u);
  // The last --cpus wins, as for every option.
  EXPECT_EQ(ok({"--cpus", "all", "--cpus", "2", "80", "localhost"}).cpus, std::vector<unsigned>{2});
  EXPECT_FALSE(ok({"--cpus", "all", "--cpus", "2", "80", "localhost"}).cpus_all);
}

TEST(CliParse, BadCpuListsAreUsageErrors) {
  const std::string what = " for --cpus (CPU numbers 0..1023 and ranges, each once: 0-3,8; or all)";
  for (const char* bad : {"", "x", "1-0", "0,0", "0-2,1", "0,", ",0", "1024", "0-1024", "-1", "1-", "0--1", " 1",
                          "1;2", "ALL"}) {
    expect_usage({"--cpus", bad, "80", "localhost"}, "invalid value [" + std::string(bad) + "]" + what);
  }
  expect_usage({"--threads", "3", "--cpus", "0-1", "80", "localhost"},
               "--threads 3 and --cpus with 2 CPUs disagree (one worker per CPU)");
  expect_usage({"--cpus"}, "option [--cpus] needs an argument");
}

TEST(CliParse, UnknownOptionsAreUsageErrors) {
  // An unknown short or long option, or an argument to a long flag, gives the usage text, 64.
  expect_usage({"-x", "80", "localhost"}, "unknown option [-x]");
  expect_usage({"-fx", "80", "localhost"}, "unknown option [-x]");
  expect_usage({"-F", "80", "localhost"}, "unknown option [-F]");
  expect_usage({"--foo", "80", "localhost"}, "unknown option [--foo]");
  expect_usage({"--foo=1", "80", "localhost"}, "unknown option [--foo]");
  expect_usage({"--version=1"}, "option [--version] takes no argument");
  expect_usage({"--help=yes"}, "option [--help] takes no argument");
  expect_usage({"--=x", "80"}, "unknown option [--]");
  expect_usage({"-\x01", "80"}, "unknown option [-\\x01]");
}

TEST(CliParse, MissingOptionArgumentIsUsageError) {
  // An option that needs an argument, last on the line, is a usage error.
  expect_usage({"-t"}, "option [-t] needs an argument");
  expect_usage({"-f", "-b"}, "option [-b] needs an argument");
  expect_usage({"-fB"}, "option [-B] needs an argument");
  expect_usage({"-c"}, "option [-c] needs an argument");
  expect_usage({"-T"}, "option [-T] needs an argument");
}

TEST(CliParse, BadTimeoutsAreUsageErrors) {
  // -t/-T 0, negative, non-numeric, trailing garbage or too large: usage text, 64.
  expect_usage({"-t", "0", "80", "localhost"}, "invalid value [0] for -t (1..2147483)");
  expect_usage({"-T", "0", "80", "localhost"}, "invalid value [0] for -T (1..2147483)");
  expect_usage({"-t0", "80", "localhost"}, "invalid value [0] for -t (1..2147483)");
  expect_usage({"-t", "-5", "80", "localhost"}, "invalid value [-5] for -t (1..2147483)");
  expect_usage({"-T", "-1", "80", "localhost"}, "invalid value [-1] for -T (1..2147483)");
  expect_usage({"-t", "abc", "80", "localhost"}, "invalid value [abc] for -t (1..2147483)");
  expect_usage({"-t", "5x", "80", "localhost"}, "invalid value [5x] for -t (1..2147483)");
  expect_usage({"-t", " 5", "80", "localhost"}, "invalid value [ 5] for -t (1..2147483)");
  expect_usage({"-t", "", "80", "localhost"}, "invalid value [] for -t (1..2147483)");
  expect_usage({"-t", "99999999999999999999999", "80", "localhost"},
               "invalid value [99999999999999999999999] for -t (1..2147483)");
  expect_usage({"-tf", "80", "localhost"}, "invalid value [f] for -t (1..2147483)");
  EXPECT_EQ(ok({"-t", "2147483", "80", "localhost"}).connect_timeout_s, 2147483u);
  EXPECT_EQ(ok({"-T", "1", "80", "localhost"}).idle_timeout_s, 1u);
}

TEST(CliParse, MissingPortOrChannelIsUsageError) {
  // No port at all, or serve mode with a port but no channel: usage text, 64.
  expect_usage({}, "missing port");
  expect_usage({"-f"}, "missing port");
  expect_usage({"-f", "--"}, "missing port");
  expect_usage({"80"}, "no channel given");
  expect_usage({"-fp", "smtp"}, "no channel given");
}

TEST(CliParse, PortsByNumberAndServiceName) {
  // The listening port is a number 1..65535 or a tcp service name (imap is an alias of imap2).
  EXPECT_EQ(ok({"1", "localhost"}).port, 1);
  EXPECT_EQ(ok({"65535", "localhost"}).port, 65535);
  EXPECT_EQ(ok({"08080", "localhost"}).port, 8080);
  EXPECT_EQ(ok({"smtp", "localhost"}).port, 25);
  EXPECT_EQ(ok({"imap", "localhost"}).port, 143);
  EXPECT_EQ(ok({"pop3", "localhost"}).port, 110);
  EXPECT_EQ(ok({"telnet", "localhost"}).port, 23);
  // A channel without a port uses the service's number.
  EXPECT_EQ(ok({"smtp", "localhost"}).groups[0].channels[0].endpoint.port, 25);
}

TEST(CliParse, InvalidPortExactMessage) {
  // A port that is neither a number in range nor a service: the classic message, 64.
  expect_error({"notaport", "localhost"}, 64, "invalid port [notaport], exiting.");
  expect_error({"0", "localhost"}, 64, "invalid port [0], exiting.");
  expect_error({"65536", "localhost"}, 64, "invalid port [65536], exiting.");
  expect_error({"99999999999999999999999", "localhost"}, 64, "invalid port [99999999999999999999999], exiting.");
  expect_error({"80x", "localhost"}, 64, "invalid port [80x], exiting.");
  expect_error({"", "localhost"}, 64, "invalid port [], exiting.");
  expect_error({"notaport"}, 64, "invalid port [notaport], exiting.");
  expect_error({"-i", "notaport"}, 64, "invalid port [notaport], exiting.");
}

TEST(CliParse, ChannelFieldForms) {
  // host, host:port, host:port:maxc, host::maxc, host:port:maxc:weight, and empty fields.
  const Config c = ok({"80", "localhost", "localhost:81", "localhost:82:16", "localhost::16",
                       "localhost:83:4:3", "localhost:", "localhost:84:", "localhost:85:0",
                       "127.0.0.1:smtp", "localhost:86:5:", "localhost:::7"});
  ASSERT_EQ(c.groups.size(), 1u);
  const auto& ch = c.groups[0].channels;
  ASSERT_EQ(ch.size(), 11u);
  struct Want { uint16_t port; uint32_t maxc; uint32_t weight; };
  const Want want[] = {{80, 0, 1}, {81, 0, 1}, {82, 16, 1}, {80, 16, 1}, {83, 4, 3}, {80, 0, 1},
                       {84, 0, 1}, {85, 0, 1}, {25, 0, 1}, {86, 5, 1}, {80, 0, 7}};
  for (size_t i = 0; i < ch.size(); ++i) {
    SCOPED_TRACE(ch[i].text);
    EXPECT_EQ(ch[i].endpoint, v4("127.0.0.1", want[i].port));
    EXPECT_EQ(ch[i].maxc, want[i].maxc);
    EXPECT_EQ(ch[i].weight, want[i].weight);
  }
  EXPECT_EQ(ch[2].text, "localhost:82:16");
}

TEST(CliParse, IPv6ChannelsInBrackets) {
  // [addr], [addr]:port, [addr]:port:maxc, [addr]::maxc and a mapped address.
  const Config c = ok({"80", "[::1]", "[::1]:81", "[::1]:81:16", "[::1]::4", "[2001:db8::1]:80:16:2",
                       "[::ffff:127.0.0.1]", "[127.0.0.1]:90", "[::1]:"});
  const auto& ch = c.groups[0].channels;
  ASSERT_EQ(ch.size(), 8u);
  EXPECT_EQ(ch[0].endpoint, v6("::1", 80));
  EXPECT_EQ(ch[1].endpoint, v6("::1", 81));
  EXPECT_EQ(ch[2].endpoint, v6("::1", 81));
  EXPECT_EQ(ch[2].maxc, 16u);
  EXPECT_EQ(ch[3].endpoint, v6("::1", 80));
  EXPECT_EQ(ch[3].maxc, 4u);
  EXPECT_EQ(ch[4].endpoint, v6("2001:db8::1", 80));
  EXPECT_EQ(ch[4].maxc, 16u);
  EXPECT_EQ(ch[4].weight, 2u);
  EXPECT_EQ(ch[5].endpoint, v6("::ffff:127.0.0.1", 80));
  EXPECT_EQ(ch[6].endpoint, v4("127.0.0.1", 90));
  EXPECT_EQ(ch[7].endpoint, v6("::1", 80));
}

TEST(CliParse, BadChannelSyntaxNamesTheChannel) {
  // Malformed channel text: one line naming the channel and the reason, 64.
  expect_error({"80", "["}, 64, "invalid channel [[]: missing ']'");
  expect_error({"80", "[::1"}, 64, "invalid channel [[::1]: missing ']'");
  expect_error({"80", "[::1]x"}, 64, "invalid channel [[::1]x]: unexpected text after ']'");
  expect_error({"80", "[]"}, 64, "invalid channel [[]]: missing host");
  expect_error({"80", "[]:80"}, 64, "invalid channel [[]:80]: missing host");
  expect_error({"80", ":80"}, 64, "invalid channel [:80]: missing host");
  expect_error({"80", ""}, 64, "invalid channel []: missing host");
  expect_error({"80", "::1"}, 64, "invalid channel [::1]: IPv6 addresses go in brackets: [::1]");
  expect_error({"80", "2001:db8::1"}, 64, "invalid channel [2001:db8::1]: IPv6 addresses go in brackets: [2001:db8::1]");
  expect_error({"80", "::"}, 64, "invalid channel [::]: IPv6 addresses go in brackets: [::]");
  const std::string many = "too many ':' fields (host[:port[:maxc[:weight]]]; IPv6 addresses go in brackets)";
  expect_error({"80", "a:1:2:3:4"}, 64, "invalid channel [a:1:2:3:4]: " + many);
  expect_error({"80", "2001:db8:0:0:0::1"}, 64,
               "invalid channel [2001:db8:0:0:0::1]: IPv6 addresses go in brackets: [2001:db8:0:0:0::1]");
  expect_error({"80", "::::"}, 64, "invalid channel [::::]: missing host");
  expect_error({"80", "[::1]:1:2:3:4"}, 64, "invalid channel [[::1]:1:2:3:4]: " + many);
}

TEST(CliParse, LinkLocalAddressNeedsItsInterface) {
  // fe80::1 without %interface cannot be connected to or bound: one clear line at start, 65,
  // for a channel, -b and -B alike; with its interface it is taken. Bare, it gets the bracket hint.
  // A channel's hint shows it as written, with the interface inside the brackets.
  const std::string line = "link-local address [fe80::1] needs its interface: fe80::1%<interface>";
  expect_error({"80", "[fe80::1]:81"}, 65,
               "link-local address [fe80::1] needs its interface: [fe80::1%<interface>]:81");
  expect_error({"80", "[fe80::1]"}, 65, "link-local address [fe80::1] needs its interface: [fe80::1%<interface>]");
  expect_error({"80", "[fe80::1]:81:5:2"}, 65,
               "link-local address [fe80::1] needs its interface: [fe80::1%<interface>]:81:5:2");
  expect_error({"-b", "fe80::1", "80", "localhost"}, 65, line);
  expect_error({"-B", "fe80::1", "80", "localhost"}, 65, line);
  const Config c = ok({"80", "[fe80::1%1]:81"});
  EXPECT_EQ(c.groups[0].channels[0].endpoint.to_string(), "[fe80::1%1]:81");
  expect_error({"80", "fe80::1%1"}, 64, "invalid channel [fe80::1%1]: IPv6 addresses go in brackets: [fe80::1%1]");
  // With a port after the scope, the brackets close before the port.
  expect_error({"80", "fe80::1%1:81"}, 64,
               "invalid channel [fe80::1%1:81]: IPv6 addresses go in brackets: [fe80::1%1]:81");
  expect_error({"80", "fe80::1%1:81:5"}, 64,
               "invalid channel [fe80::1%1:81:5]: IPv6 addresses go in brackets: [fe80::1%1]:81:5");
  // fe80::1 reads as host "fe80" with maxc 1: the classic line, with the hint after it.
  expect_error({"80", "fe80::1"}, 65,
               "unknown or invalid address [fe80] (an IPv6 address goes in brackets: [fe80::1])");
}

TEST(CliParse, BadChannelPortMaxcWeight) {
  // A bad channel port gets the classic port message; bad maxc/weight name themselves, 64.
  expect_error({"80", "localhost:notaport"}, 64, "invalid port [notaport], exiting.");
  expect_error({"80", "localhost:0"}, 64, "invalid port [0], exiting.");
  expect_error({"80", "[::1]:70000"}, 64, "invalid port [70000], exiting.");
  expect_error({"80", "localhost:80:abc"}, 64,
               "invalid maxc [abc] in channel [localhost:80:abc] (0..4294967295, 0 = unlimited)");
  expect_error({"80", "localhost::-1"}, 64,
               "invalid maxc [-1] in channel [localhost::-1] (0..4294967295, 0 = unlimited)");
  expect_error({"80", "localhost:80:4294967296"}, 64,
               "invalid maxc [4294967296] in channel [localhost:80:4294967296] (0..4294967295, 0 = unlimited)");
  EXPECT_EQ(ok({"80", "localhost:80:4294967295"}).groups[0].channels[0].maxc, 4294967295u);
  expect_error({"80", "localhost:80:1:0"}, 64, "invalid weight [0] in channel [localhost:80:1:0] (1..1000000)");
  expect_error({"80", "localhost:80:1:x"}, 64, "invalid weight [x] in channel [localhost:80:1:x] (1..1000000)");
  expect_error({"80", "localhost:80:1:1000001"}, 64,
               "invalid weight [1000001] in channel [localhost:80:1:1000001] (1..1000000)");
  EXPECT_EQ(ok({"80", "localhost:80:1:1000000"}).groups[0].channels[0].weight, 1000000u);
}

TEST(CliParse, UnresolvableHostExactMessage) {
  // A host that does not resolve: the classic message with the host as written, 65.
  expect_error({"80", "no.such.host.invalid"}, 65, "unknown or invalid address [no.such.host.invalid]");
  expect_error({"80", "no.such.host.invalid:81:5"}, 65, "unknown or invalid address [no.such.host.invalid]");
  expect_error({"80", "[no.such.host.invalid]:81"}, 65, "unknown or invalid address [no.such.host.invalid]");
  expect_error({"80", "[::1::2]"}, 65, "unknown or invalid address [::1::2]");
  expect_error({"80", "localhost", "!", "host!"}, 65, "unknown or invalid address [host!]");
}

TEST(CliParse, GroupSeparatorsAndTypes) {
  // '!' ends a round-robin group, '%' a hash group; the last group is round robin.
  const Config c = ok({"80", "localhost", "localhost:81", "!", "localhost:82", "%", "localhost:83"});
  ASSERT_EQ(c.groups.size(), 3u);
  EXPECT_EQ(c.groups[0].type, core::GroupType::RoundRobin);
  EXPECT_EQ(c.groups[0].channels.size(), 2u);
  EXPECT_EQ(c.groups[1].type, core::GroupType::Hash);
  EXPECT_EQ(c.groups[1].channels.size(), 1u);
  EXPECT_EQ(c.groups[2].type, core::GroupType::RoundRobin);
  EXPECT_EQ(c.groups[2].channels[0].endpoint.port, 83);
}

TEST(CliParse, TrailingSeparatorTypesTheLastGroup) {
  // `balance 80 a b %` is one hash group; `balance 80 a !` one round-robin group.
  const Config h = ok({"80", "localhost", "localhost:81", "%"});
  ASSERT_EQ(h.groups.size(), 1u);
  EXPECT_EQ(h.groups[0].type, core::GroupType::Hash);
  EXPECT_EQ(h.groups[0].channels.size(), 2u);
  const Config r = ok({"80", "localhost", "!"});
  ASSERT_EQ(r.groups.size(), 1u);
  EXPECT_EQ(r.groups[0].type, core::GroupType::RoundRobin);
  const Config two = ok({"80", "localhost", "%", "localhost", "%"});
  ASSERT_EQ(two.groups.size(), 2u);
  EXPECT_EQ(two.groups[1].type, core::GroupType::Hash);
}

TEST(CliParse, SeparatorWithoutChannelExactMessage) {
  // A separator with no channel before it: `no channels in group`, 69.
  expect_error({"80", "!", "localhost"}, 69, "no channels in group");
  expect_error({"80", "%", "localhost"}, 69, "no channels in group");
  expect_error({"80", "localhost", "!", "!", "localhost"}, 69, "no channels in group");
  expect_error({"80", "localhost", "%", "%"}, 69, "no channels in group");
  expect_error({"80", "!"}, 69, "no channels in group");
}

TEST(CliParse, ManPageSelfReferencingExample) {
  // The man page's self-referencing example parses into its four groups.
  const Config c = ok({"8888", "localhost::12", "!", "localhost::4", "!", "localhost::2", "localhost::2", "!",
                       "localhost:25"});
  ASSERT_EQ(c.groups.size(), 4u);
  EXPECT_EQ(c.groups[0].channels[0].maxc, 12u);
  EXPECT_EQ(c.groups[0].channels[0].endpoint, v4("127.0.0.1", 8888));
  EXPECT_EQ(c.groups[1].channels[0].maxc, 4u);
  EXPECT_EQ(c.groups[2].channels.size(), 2u);
  EXPECT_EQ(c.groups[3].channels[0].endpoint, v4("127.0.0.1", 25));
  EXPECT_EQ(c.groups[3].channels[0].maxc, 0u);
}

TEST(CliParse, GroupAndChannelLimits) {
  // kMaxGroups groups and kMaxChannels channels per group fit; one more is an error, 64.
  std::vector<std::string> groups{"80"};
  for (uint32_t g = 0; g < core::kMaxGroups; ++g) {
    groups.push_back("127.0.0.1");
    groups.push_back("!");
  }
  EXPECT_EQ(ok(groups).groups.size(), core::kMaxGroups);
  groups.push_back("127.0.0.2");
  expect_error(groups, 64, "too many groups at [127.0.0.2] (at most 32)");

  std::vector<std::string> channels{"80"};
  for (uint32_t i = 0; i < core::kMaxChannels; ++i) channels.push_back("127.0.0.1:" + std::to_string(i + 1));
  EXPECT_EQ(ok(channels).groups[0].channels.size(), core::kMaxChannels);
  channels.push_back("127.0.0.9");
  expect_error(channels, 64, "too many channels in group 0 at [127.0.0.9] (at most 64)");
}

TEST(CliParse, InteractiveAndCommandModes) {
  // -i and -c cmd take only a port (and -b, -d, -M); the instance is port plus -b as written.
  const Config i = ok({"-i", "80"});
  EXPECT_EQ(i.mode, Mode::Interactive);
  EXPECT_EQ(i.port, 80);
  EXPECT_TRUE(i.groups.empty());
  const Config c = ok({"-c", "show", "-d", "-M", "smtp"});
  EXPECT_EQ(c.mode, Mode::Command);
  EXPECT_EQ(c.command, "show");
  EXPECT_EQ(c.port, 25);
  EXPECT_TRUE(c.debug && c.use_mmap);
  const Config attached = ok({"-cmaxc 0 5", "80"});
  EXPECT_EQ(attached.command, "maxc 0 5");
  const Config b = ok({"-b", "no.such.host.invalid", "-i", "80"});
  EXPECT_EQ(b.bind_text, "no.such.host.invalid");  // names the instance; not resolved for -i/-c
  EXPECT_FALSE(b.bind.has_value());
  EXPECT_EQ(ok({"-dMi", "imap"}).mode, Mode::Interactive);
}

TEST(CliParse, ControlModeMisuseIsUsageError) {
  // -i/-c with channels, -i with -c, or without a port: usage text, 64.
  expect_usage({"-i", "80", "localhost"}, "unexpected channel [localhost]: -i takes only a port");
  expect_usage({"-c", "show", "80", "localhost"}, "unexpected channel [localhost]: -c takes only a port");
  expect_usage({"-i", "-c", "show", "80"}, "options [-i] and [-c] cannot be combined");
  expect_usage({"-c", "show", "-i", "80"}, "options [-i] and [-c] cannot be combined");
  expect_usage({"-i"}, "missing port");
  expect_usage({"-c", "show"}, "missing port");
}

TEST(CliParse, OptionAfterThePortIsUsageError) {
  // Options must come before the port; one after it is named, not taken for a host.
  expect_usage({"80", "localhost", "-f"}, "option [-f] must come before the port");
  expect_usage({"-i", "80", "-d"}, "option [-d] must come before the port");
  expect_error({"80", "-"}, 65, "unknown or invalid address [-]");
}

TEST(CliParse, ListenBindAddress) {
  // -b takes IPv4, IPv6, ::ffff:a.b.c.d or a name, gets the listening port; -6 maps IPv4.
  EXPECT_EQ(ok({"-b", "127.0.0.1", "80", "localhost"}).bind, v4("127.0.0.1", 80));
  EXPECT_EQ(ok({"-b", "localhost", "81", "localhost"}).bind, v4("127.0.0.1", 81));
  EXPECT_EQ(ok({"-b", "::1", "80", "localhost"}).bind, v6("::1", 80));
  EXPECT_EQ(ok({"-b", "2001:DB8::1", "80", "localhost"}).bind, v6("2001:db8::1", 80));
  EXPECT_EQ(ok({"-b", "::ffff:127.0.0.1", "80", "localhost"}).bind, v6("::ffff:127.0.0.1", 80));
  const Config six = ok({"-6", "-b", "127.0.0.1", "80", "localhost"});
  EXPECT_EQ(six.bind, v6("::ffff:127.0.0.1", 80));
  EXPECT_EQ(six.bind_text, "127.0.0.1");
  EXPECT_EQ(ok({"-b127.0.0.1", "-6", "80", "localhost"}).bind, v6("::ffff:127.0.0.1", 80));
  EXPECT_EQ(ok({"-6", "-b", "::1", "80", "localhost"}).bind, v6("::1", 80));
  EXPECT_FALSE(ok({"-6", "80", "localhost"}).bind.has_value());
}

TEST(CliParse, BindAddressesTakeIPv6InBrackets) {
  // -b and -B take an IPv6 address in the brackets a channel needs, as the same instance and
  // address as without them; brackets around anything but an IPv6 address are still an error.
  const Config b = ok({"-b", "[::1]", "80", "localhost"});
  EXPECT_EQ(b.bind, v6("::1", 80));
  EXPECT_EQ(b.bind_text, "::1");
  EXPECT_EQ(ok({"-i", "-b", "[::1]", "80"}).bind_text, "::1");
  EXPECT_EQ(ok({"-b", "[2001:DB8::1]", "80", "localhost"}).bind, v6("2001:db8::1", 80));
  EXPECT_EQ(ok({"-B", "[::1]", "80", "[::1]"}).out_bind, v6("::1", 0));
  expect_error({"-b", "[fe80::1]", "80", "localhost"}, 65,
               "link-local address [fe80::1] needs its interface: fe80::1%<interface>");
  expect_error({"-b", "[localhost]", "80", "localhost"}, 65, "unknown or invalid address [[localhost]]");
  expect_error({"-b", "[127.0.0.1]", "80", "localhost"}, 65, "unknown or invalid address [[127.0.0.1]]");
  expect_error({"-B", "[::1", "80", "localhost"}, 65, "unknown or invalid address [[::1]");
  expect_error({"-b", "[]", "80", "localhost"}, 65, "unknown or invalid address [[]]");
}

TEST(CliParse, UnresolvableBindAddresses) {
  // An unresolvable -b or -B gets the classic address message, 65.
  expect_error({"-b", "no.such.host.invalid", "80", "localhost"}, 65,
               "unknown or invalid address [no.such.host.invalid]");
  expect_error({"-B", "no.such.host.invalid", "80", "localhost"}, 65,
               "unknown or invalid address [no.such.host.invalid]");
  expect_error({"-b", "", "80", "localhost"}, 65, "unknown or invalid address []");
  expect_error({"-b", "1.2.3.4.5", "80", "localhost"}, 65, "unknown or invalid address [1.2.3.4.5]");
}

TEST(CliParse, OutgoingBindAddress) {
  // -B resolves to a local address with port 0.
  EXPECT_EQ(ok({"-B", "127.0.0.1", "80", "localhost"}).out_bind, v4("127.0.0.1", 0));
  EXPECT_EQ(ok({"-B", "::1", "80", "[::1]"}).out_bind, v6("::1", 0));
}

TEST(CliParse, HugeArgumentsGiveOneShortLine) {
  // A 1 MB port, host, channel, option argument or bind address: a short one-line error.
  const std::string mb(1 << 20, 'a');
  const std::vector<std::vector<std::string>> cases = {
      {mb, "localhost"},        {"80", mb},          {"80", "localhost:" + mb}, {"80", "localhost:80:" + mb},
      {"80", "[" + mb + "]"},   {"80", "[" + mb},    {"-t", mb, "80", "h"},     {"-b", mb, "80", "localhost"},
      {"-B", mb, "80", "localhost"}, {"-c", mb, "80"}, {"--threads=" + mb},     {"--" + mb},
  };
  for (const auto& args : cases) {
    const ParseOutcome o = run(args);
    EXPECT_FALSE(o.config.has_value());
    EXPECT_NE(o.exit_code, 0);
    const std::string first = o.err.substr(0, o.err.find('\n'));
    EXPECT_LT(first.size(), 400u) << first.substr(0, 400);
    EXPECT_NE(first.find("..."), std::string::npos) << first;  // the argument is cut, and says so
  }
  expect_error({"80", mb}, 64, "invalid channel [" + std::string(80, 'a') + "...]: host longer than 255 characters");
  // A long cluster of valid flags is just flags; a long cluster of unknown ones names the first.
  EXPECT_TRUE(ok({"-" + std::string(1 << 20, 'f'), "80", "localhost"}).foreground);
  expect_usage({"-" + std::string(1 << 20, 'x'), "80", "localhost"}, "unknown option [-x]");
}

TEST(CliParse, HostLengthBound) {
  // A 255-character host is looked up (and here fails, 65); 256 is rejected unresolved, 64.
  const std::string h255(255, 'h');
  expect_error({"80", h255}, 65, "unknown or invalid address [" + h255 + "]");
  const ParseOutcome o = run({"80", std::string(256, 'h')});
  EXPECT_EQ(o.exit_code, 64);
  EXPECT_NE(o.err.find("host longer than 255 characters"), std::string::npos);
}

TEST(CliParse, ControlBytesAreEscapedInMessages) {
  // Control characters in an argument are shown escaped, so the message stays one line.
  expect_error({"80", "a\nb"}, 65, "unknown or invalid address [a\\x0Ab]");
  expect_error({"x\ty\x7f", "localhost"}, 64, "invalid port [x\\x09y\\x7F], exiting.");
  expect_error({"80", "h\xff:1"}, 65, "unknown or invalid address [h\\xFF]");
}

TEST(CliParse, GarbageNeverCrashes) {
  // Odd inputs all end in a non-zero exit with a message, never a crash or a config.
  const std::vector<std::string> odd = {
      "[", "[::1", "host.invalid:", "host.invalid:80:", "::::", "]", "[]", ":", "\x01\x02", "a:b:c:d:e",
      "[::1]:", "[::1]::", "[::1]:::x", "[::1]::::", "[[::1]]", "[::1]]", "]:", "%%", "!!", ":::",
      "localhost:+1", "localhost:1e3", "localhost:0x50", "[%]", "[ ]", " ", "localhost: 80",
  };
  for (const std::string& w : odd) {
    SCOPED_TRACE(w);
    const ParseOutcome o = run({"80", w});
    if (o.config) continue;  // some odd forms are valid (e.g. "[::1]:")
    EXPECT_TRUE(o.exit_code == 64 || o.exit_code == 65 || o.exit_code == 69) << o.exit_code;
    EXPECT_FALSE(o.err.empty());
    EXPECT_EQ(o.err.find('\n'), o.err.size() - 1) << "one line: " << o.err;
  }
}

TEST(CliParse, NullAndEmptyArgv) {
  // argc 0 or a lone program name is a usage error, not a crash.
  const char* none[] = {nullptr};
  EXPECT_EQ(parse(0, none).exit_code, 64);
  const char* name[] = {"balance", nullptr};
  EXPECT_EQ(parse(1, name).exit_code, 64);
}

// The options beyond the classic tool parse into the Config, with their defaults untouched otherwise.
TEST(CliParse, ExtendedOptions) {
  const Config d = ok({"80", "localhost"});
  EXPECT_EQ(d.grace_s, 30u);
  EXPECT_EQ(d.check_interval_s, 0u);
  EXPECT_EQ(d.rise, 2u);
  EXPECT_EQ(d.fall, 3u);
  EXPECT_EQ(d.proxy_protocol, ProxyProtocol::None);
  EXPECT_FALSE(d.metrics.has_value());
  EXPECT_FALSE(d.log_conns);
  EXPECT_EQ(d.loopback_cc, "cubic");
  EXPECT_FALSE(d.loopback_cc_given);

  const Config c = ok({"--grace", "0", "--check=2", "--rise", "4", "--fall", "5", "--proxy-protocol", "v2",
                       "--metrics", "127.0.0.1:9100", "--log-conns", "80", "localhost"});
  EXPECT_EQ(c.grace_s, 0u);
  EXPECT_EQ(c.check_interval_s, 2u);
  EXPECT_EQ(c.rise, 4u);
  EXPECT_EQ(c.fall, 5u);
  EXPECT_EQ(c.proxy_protocol, ProxyProtocol::V2);
  ASSERT_TRUE(c.metrics.has_value());
  EXPECT_EQ(*c.metrics, v4("127.0.0.1", 9100));
  EXPECT_TRUE(c.log_conns);
  EXPECT_EQ(ok({"--proxy-protocol=v1", "80", "localhost"}).proxy_protocol, ProxyProtocol::V1);
  EXPECT_EQ(*ok({"--metrics", "[::1]:9100", "80", "localhost"}).metrics, v6("::1", 9100));
  const Config reno = ok({"--loopback-cc", "reno", "80", "localhost"});
  EXPECT_EQ(reno.loopback_cc, "reno");
  EXPECT_TRUE(reno.loopback_cc_given);
  const Config system = ok({"--loopback-cc=system", "80", "localhost"});
  EXPECT_EQ(system.loopback_cc, "");  // the system's own, untouched
  EXPECT_TRUE(system.loopback_cc_given);
}

// Bad values of the extended options are usage errors naming the value.
TEST(CliParse, ExtendedOptionsBadValues) {
  expect_usage({"--proxy-protocol", "v3", "80", "localhost"}, "invalid value [v3] for --proxy-protocol (v1 or v2)");
  expect_usage({"--check", "0", "80", "localhost"}, "invalid value [0] for --check (1..2147483)");
  expect_usage({"--rise", "x", "80", "localhost"}, "invalid value [x] for --rise (1..1000)");
  expect_usage({"--grace", "-1", "80", "localhost"}, "invalid value [-1] for --grace (0..2147483)");
  for (const char* cc : {"", "cu bic", "cubic;", "sixteen_letters_", "/cubic"}) {
    SCOPED_TRACE(cc);
    expect_usage({"--loopback-cc", cc, "80", "localhost"},
                 "invalid value [" + std::string(cc) + "] for --loopback-cc (a congestion control algorithm such as " +
                     "cubic or reno, at most 15 letters, digits, - or _; or system)");
  }
  expect_usage({"--metrics", "9100", "80", "localhost"}, "invalid address [9100] for --metrics (addr:port)");
  expect_usage({"--metrics", "127.0.0.1:", "80", "localhost"}, "invalid address [127.0.0.1:] for --metrics (addr:port)");
  expect_usage({"--metrics", "::1:9100", "80", "localhost"},
               "invalid address [::1:9100] for --metrics (addr:port, an IPv6 address in brackets: [::1]:9100)");
  const ParseOutcome o = run({"--metrics", "no.such.host.invalid:9100", "80", "localhost"});
  EXPECT_EQ(o.exit_code, 65);
  EXPECT_EQ(o.err, "unknown or invalid address [no.such.host.invalid]\n");
}

// "@" ends a least-connections group, like "!" and "%" end theirs.
TEST(CliParse, AtSeparatorMakesLeastConnectionsGroup) {
  const Config c = ok({"80", "localhost", "localhost", "@", "localhost", "%", "localhost"});
  ASSERT_EQ(c.groups.size(), 3u);
  EXPECT_EQ(c.groups[0].type, core::GroupType::LeastConn);
  EXPECT_EQ(c.groups[1].type, core::GroupType::Hash);
  EXPECT_EQ(c.groups[2].type, core::GroupType::RoundRobin);
  const ParseOutcome o = run({"80", "@", "localhost"});
  EXPECT_EQ(o.exit_code, 69);
  EXPECT_EQ(o.err, "no channels in group\n");
}

TEST(CliUsage, UsageTextIsCompleteAndNarrow) {
  // The usage text names the program and version, the three forms and every option.
  const std::string u = usage_text();
  EXPECT_EQ(u.rfind(std::string("balance ") + kVersion, 0), 0u);
  EXPECT_NE(u.find("balance [-b addr] [-B addr] [-t sec] [-T sec] [-adfpHM6]"), std::string::npos);
  EXPECT_NE(u.find("balance [-b addr] -i [-d] [-M] port"), std::string::npos);
  EXPECT_NE(u.find("balance [-b addr] -c cmd [-d] [-M] port"), std::string::npos);
  for (const char* opt : {"  -6 ", "  -a ", "  -b addr ", "  -B addr ", "  -c cmd ", "  -d ", "  -f ", "  -H ",
                          "  -i ", "  -M ", "  -p ", "  -t sec ", "  -T sec ", "  -h, --help ", "--version ",
                          "--threads n "}) {
    EXPECT_NE(u.find(opt), std::string::npos) << opt;
  }
  size_t start = 0;
  while (start < u.size()) {
    const size_t end = u.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "ends with a newline";
    EXPECT_LE(end - start, 100u) << u.substr(start, end - start);
    start = end + 1;
  }
}

TEST(CliScanner, OptionArgumentMayLookLikeAnOption) {
  // Like getopt, the word after an option that takes an argument is its argument, dashes and all.
  const OptionDef defs[] = {{1, 't', "", "sec", ""}, {2, 'f', "", "", ""}};
  const char* argv[] = {"p", "-t", "-f", "-f", "x", nullptr};
  ArgScanner s(5, argv, defs);
  ScanItem a = s.next();
  ASSERT_EQ(a.kind, ScanItem::Kind::Option);
  EXPECT_EQ(a.option->id, 1);
  EXPECT_EQ(a.value, "-f");
  ScanItem b = s.next();
  ASSERT_EQ(b.kind, ScanItem::Kind::Option);
  EXPECT_EQ(b.option->id, 2);
  EXPECT_EQ(s.next().kind, ScanItem::Kind::End);
  EXPECT_EQ(s.operand_index(), 4);
  EXPECT_EQ(s.next().kind, ScanItem::Kind::End);  // stays at End
}

TEST(CliScanner, ScannersAreIndependent) {
  // Two scanners over different argv interleave without sharing state (reentrant).
  const OptionDef defs[] = {{1, 'a', "", "", ""}, {2, 'b', "", "", ""}};
  const char* argv1[] = {"p", "-ab", nullptr};
  const char* argv2[] = {"p", "-ba", "-a", nullptr};
  ArgScanner s1(2, argv1, defs);
  ArgScanner s2(3, argv2, defs);
  EXPECT_EQ(s1.next().option->id, 1);
  EXPECT_EQ(s2.next().option->id, 2);
  EXPECT_EQ(s1.next().option->id, 2);
  EXPECT_EQ(s2.next().option->id, 1);
  EXPECT_EQ(s1.next().kind, ScanItem::Kind::End);
  EXPECT_EQ(s2.next().option->id, 1);
  EXPECT_EQ(s2.next().kind, ScanItem::Kind::End);
  EXPECT_EQ(s1.operand_index(), 2);
  EXPECT_EQ(s2.operand_index(), 3);
}

TEST(CliScanner, LoneDashIsAnOperand) {
  // A lone "-" ends the options and is the first operand; "--" is consumed.
  const OptionDef defs[] = {{1, 'a', "", "", ""}};
  const char* argv[] = {"p", "-a", "-", nullptr};
  ArgScanner s(3, argv, defs);
  EXPECT_EQ(s.next().kind, ScanItem::Kind::Option);
  EXPECT_EQ(s.next().kind, ScanItem::Kind::End);
  EXPECT_EQ(s.operand_index(), 2);
  const char* argv2[] = {"p", "--", "-a", nullptr};
  ArgScanner s2(3, argv2, defs);
  EXPECT_EQ(s2.next().kind, ScanItem::Kind::End);
  EXPECT_EQ(s2.operand_index(), 2);
}

TEST(CliValues, NumbersPortsAndPrintable) {
  // parse_number takes plain digits within a bound; printable escapes and cuts.
  EXPECT_EQ(parse_number("0", 5), 0u);
  EXPECT_EQ(parse_number("5", 5), 5u);
  EXPECT_FALSE(parse_number("6", 5));
  EXPECT_FALSE(parse_number("", 5));
  EXPECT_FALSE(parse_number("+1", 5));
  EXPECT_EQ(parse_number("18446744073709551615", UINT64_MAX), UINT64_MAX);
  EXPECT_FALSE(parse_number("18446744073709551616", UINT64_MAX));
  EXPECT_EQ(parse_port("imap"), 143);
  EXPECT_EQ(parse_port("imap2"), 143);
  EXPECT_FALSE(parse_port("smtp/tcp"));
  EXPECT_FALSE(parse_port(std::string(kMaxServiceLength + 1, 'x')));
  EXPECT_EQ(printable("abc"), "abc");
  EXPECT_EQ(printable("a\x01"), "a\\x01");
  EXPECT_EQ(printable("abcdef", 3), "abc...");
}

TEST(CliChannelText, SplitsFields) {
  // split_channel separates host, port, maxc and weight, brackets or not.
  const ChannelText a = split_channel("h:1:2:3");
  EXPECT_EQ(a.error, "");
  EXPECT_EQ(a.host, "h");
  EXPECT_EQ(a.port, "1");
  EXPECT_EQ(a.maxc, "2");
  EXPECT_EQ(a.weight, "3");
  const ChannelText b = split_channel("[fe80::1%eth0]::9");
  EXPECT_EQ(b.error, "");
  EXPECT_EQ(b.host, "fe80::1%eth0");
  EXPECT_EQ(b.port, "");
  EXPECT_EQ(b.maxc, "9");
  const ChannelText c = split_channel("h");
  EXPECT_EQ(c.host, "h");
  EXPECT_EQ(c.port, "");
}

}  // namespace
}  // namespace balance::cli
