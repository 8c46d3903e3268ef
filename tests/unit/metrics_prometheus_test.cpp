// Tests of the Prometheus text exposition of /metrics: names, labels, escaping, HELP/TYPE
// structure, the health series only with checks on, and clamped corrupt tables.
#include "metrics/prometheus.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "metrics_test_util.h"
#include "version.h"

namespace core = balance::core;
namespace metrics = balance::metrics;
using metrics::testing::endpoint;
using metrics::testing::lines_of;

namespace {

std::string exposition(const core::Table& table) { return metrics::format_prometheus(metrics::take_snapshot(table, 0)); }

// The sample lines of `family` (exact name, labels included).
std::vector<std::string> samples(const std::string& text, const std::string& family) {
  std::vector<std::string> out;
  for (const std::string& line : lines_of(text)) {
    if (line.rfind(family + "{", 0) == 0 || line.rfind(family + " ", 0) == 0) out.push_back(line);
  }
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  const auto lines = lines_of(text);
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

}  // namespace

TEST(MetricsPrometheus, ProcessSeries) {
  auto table = metrics::testing::empty_table(1700000000);
  table->header.threads.store(4);
  table->header.accepted_total.store(12);
  table->header.refused_total.store(1);
  const std::string text = exposition(*table);
  EXPECT_EQ(text.substr(0, text.find("# HELP balance_channel")),
            "# HELP balance_build_info Version of balance (the value is always 1).\n"
            "# TYPE balance_build_info gauge\n"
            "balance_build_info{version=\"" + std::string(balance::kVersion) + "\"} 1\n"
            "# HELP balance_start_time_seconds Start time of the instance since the epoch, in seconds (kept across upgrades).\n"
            "# TYPE balance_start_time_seconds gauge\n"
            "balance_start_time_seconds 1700000000\n"
            "# HELP balance_worker_threads Worker threads serving connections.\n"
            "# TYPE balance_worker_threads gauge\n"
            "balance_worker_threads 4\n"
            "# HELP balance_accepted_connections_total Client connections accepted.\n"
            "# TYPE balance_accepted_connections_total counter\n"
            "balance_accepted_connections_total 12\n"
            "# HELP balance_refused_connections_total Accepted client connections that no channel would take.\n"
            "# TYPE balance_refused_connections_total counter\n"
            "balance_refused_connections_total 1\n"
            "# HELP balance_log_lines_dropped_total Log lines dropped because the log's reader was not keeping up.\n"
            "# TYPE balance_log_lines_dropped_total counter\n"
            "balance_log_lines_dropped_total 0\n"
            "# HELP balance_log_lines_lost_total Log lines the log's destination did not take whole (a write error, such as a full disk).\n"
            "# TYPE balance_log_lines_lost_total counter\n"
            "balance_log_lines_lost_total 0\n");
}

TEST(MetricsPrometheus, ChannelSeriesCarryGroupChannelAndBackend) {
  auto table = metrics::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 8081), 0, true);
  table->append_channel(1, endpoint("127.0.0.1", 8082), 16, false, 5);
  metrics::testing::set_counters(table->groups[1].channels[0], {3, 70, 2, 1000, 250000});
  const std::string text = exposition(*table);
  const std::string l0 = "{group=\"0\",channel=\"0\",backend=\"127.0.0.1:8081\"}";
  const std::string l1 = "{group=\"1\",channel=\"0\",backend=\"127.0.0.1:8082\"}";
  EXPECT_TRUE(has_line(text, "balance_channel_connections" + l1 + " 3"));
  EXPECT_TRUE(has_line(text, "balance_channel_connections_total" + l1 + " 70"));
  EXPECT_TRUE(has_line(text, "balance_channel_connect_failures_total" + l1 + " 2"));
  EXPECT_TRUE(has_line(text, "balance_channel_sent_bytes_total" + l1 + " 1000"));
  EXPECT_TRUE(has_line(text, "balance_channel_received_bytes_total" + l1 + " 250000"));
  EXPECT_TRUE(has_line(text, "balance_channel_enabled" + l1 + " 0"));
  EXPECT_TRUE(has_line(text, "balance_channel_enabled" + l0 + " 1"));
  EXPECT_TRUE(has_line(text, "balance_channel_max_connections" + l1 + " 16"));
  EXPECT_TRUE(has_line(text, "balance_channel_max_connections" + l0 + " 0"));
  EXPECT_TRUE(has_line(text, "balance_channel_weight" + l1 + " 5"));
  EXPECT_EQ(samples(text, "balance_channel_connections").size(), 2u);
}

TEST(MetricsPrometheus, EveryFamilyHasHelpAndTypeOnceBeforeItsSamples) {
  auto table = metrics::testing::empty_table();
  table->header.flags.store(core::kFlagChecks);
  table->append_channel(0, endpoint("127.0.0.1", 1), 0, true);
  table->append_channel(0, endpoint("::1", 2), 0, true);
  table->append_channel(3, endpoint("127.0.0.1", 3), 0, true);
  const std::map<std::string, std::string> expected_types = {
      {"balance_build_info", "gauge"},
      {"balance_start_time_seconds", "gauge"},
      {"balance_worker_threads", "gauge"},
      {"balance_accepted_connections_total", "counter"},
      {"balance_refused_connections_total", "counter"},
      {"balance_log_lines_dropped_total", "counter"},
      {"balance_log_lines_lost_total", "counter"},
      {"balance_channel_connections", "gauge"},
      {"balance_channel_connections_total", "counter"},
      {"balance_channel_connect_failures_total", "counter"},
      {"balance_channel_sent_bytes_total", "counter"},
      {"balance_channel_received_bytes_total", "counter"},
      {"balance_channel_enabled", "gauge"},
      {"balance_channel_up", "gauge"},
      {"balance_channel_max_connections", "gauge"},
      {"balance_channel_weight", "gauge"},
  };
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::string current;  // the family whose samples may follow
  for (const std::string& line : lines_of(exposition(*table))) {
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.insert(name).second) << "HELP twice: " << name;
      current = name;
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(name, current) << "TYPE without its HELP just before";
      EXPECT_TRUE(types.emplace(name, line.substr(line.rfind(' ') + 1)).second) << "TYPE twice: " << name;
    } else {
      const std::string name = line.substr(0, line.find_first_of("{ "));
      EXPECT_EQ(name, current) << "sample outside its family: " << line;
      EXPECT_TRUE(types.count(name)) << line;
    }
  }
  EXPECT_EQ(types, expected_types);
}

TEST(MetricsPrometheus, HealthSeriesOnlyWhenChecksAreOn) {
  auto table = metrics::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 8081), 0, true);
  table->append_channel(0, endpoint("127.0.0.1", 8082), 0, true);
  table->groups[0].channels[1].health.store(static_cast<uint32_t>(core::Health::Down));
  EXPECT_EQ(exposition(*table).find("balance_channel_up"), std::string::npos);

  table->header.flags.store(core::kFlagChecks);
  const std::string text = exposition(*table);
  EXPECT_TRUE(has_line(text, "# TYPE balance_channel_up gauge"));
  EXPECT_TRUE(has_line(text, "balance_channel_up{group=\"0\",channel=\"0\",backend=\"127.0.0.1:8081\"} 1"));
  EXPECT_TRUE(has_line(text, "balance_channel_up{group=\"0\",channel=\"1\",backend=\"127.0.0.1:8082\"} 0"));
}

TEST(MetricsPrometheus, Ipv6BackendsAreBracketed) {
  auto table = metrics::testing::empty_table();
  table->append_channel(0, endpoint("::1", 8081), 0, true);
  table->append_channel(0, endpoint("2001:db8::10", 443), 0, true);
  const std::string text = exposition(*table);
  EXPECT_TRUE(has_line(text, "balance_channel_connections{group=\"0\",channel=\"0\",backend=\"[::1]:8081\"} 0"));
  EXPECT_TRUE(has_line(text, "balance_channel_connections{group=\"0\",channel=\"1\",backend=\"[2001:db8::10]:443\"} 0"));
}

TEST(MetricsPrometheus, LabelValuesAreEscaped) {
  EXPECT_EQ(metrics::escape_label_value("plain 127.0.0.1:80"), "plain 127.0.0.1:80");
  EXPECT_EQ(metrics::escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(metrics::escape_label_value("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(metrics::escape_label_value("two\nlines"), "two\\nlines");
  EXPECT_EQ(metrics::escape_label_value(""), "");

  metrics::Snapshot snap;
  snap.version = "4.0\"x\\\n";
  EXPECT_TRUE(has_line(metrics::format_prometheus(snap), "balance_build_info{version=\"4.0\\\"x\\\\\\n\"} 1"));
}

TEST(MetricsPrometheus, CorruptTableIsClampedAndStillWellFormed) {
  auto table = metrics::testing::empty_table();
  table->header.flags.store(core::kFlagChecks | 0xf0);
  table->append_channel(0, endpoint("127.0.0.1", 1), 0, true);
  table->groups[0].nchannels.store(UINT32_MAX);
  table->groups[0].channels[0].health.store(12345);
  table->groups[0].channels[0].totalc.store(UINT64_MAX);
  table->groups[0].channels[1].endpoint_seq.store(3);  // stuck mid-write: no address
  const std::string text = exposition(*table);
  EXPECT_EQ(samples(text, "balance_channel_connections_total").size(), core::kMaxChannels);
  EXPECT_TRUE(has_line(text, "balance_channel_connections_total{group=\"0\",channel=\"0\",backend=\"127.0.0.1:1\"} "
                             "18446744073709551615"));
  EXPECT_TRUE(has_line(text, "balance_channel_up{group=\"0\",channel=\"0\",backend=\"127.0.0.1:1\"} 0"));
  EXPECT_TRUE(has_line(text, "balance_channel_connections{group=\"0\",channel=\"1\",backend=\"-\"} 0"));
}

TEST(MetricsPrometheus, EmptyTableHasFamiliesButNoChannelSamples) {
  auto table = metrics::testing::empty_table();
  const std::string text = exposition(*table);
  EXPECT_TRUE(has_line(text, "# TYPE balance_channel_connections gauge"));
  EXPECT_TRUE(samples(text, "balance_channel_connections").empty());
  EXPECT_EQ(text.back(), '\n');
}
