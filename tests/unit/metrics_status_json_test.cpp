// Tests of /status.json: the exact document, string escaping, health null/true/false, group
// types, IPv6 backends and a clamped corrupt table.
#include "metrics/status_json.h"

#include <gtest/gtest.h>

#include <string>

#include "metrics_test_util.h"
#include "version.h"

namespace core = balance::core;
namespace metrics = balance::metrics;
using metrics::testing::endpoint;

namespace {

std::string status_json(const core::Table& table, int64_t now_ms = 1700000001500) {
  return metrics::format_status_json(metrics::take_snapshot(table, now_ms));
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST(MetricsStatusJson, ExactDocument) {
  auto table = metrics::testing::empty_table(1700000000);
  table->header.accepted_total.store(9);
  table->header.refused_total.store(1);
  table->append_channel(0, endpoint("127.0.0.1", 8081), 0, true);
  table->append_channel(0, endpoint("::1", 8082), 8, false, 2);
  table->groups[2].type.store(static_cast<uint32_t>(core::GroupType::Hash));
  table->append_channel(2, endpoint("10.0.0.1", 80), 0, true);
  metrics::testing::set_counters(table->groups[0].channels[0], {1, 8, 0, 300, 4000});
  metrics::testing::set_counters(table->groups[0].channels[1], {0, 1, 1, 0, 0});
  EXPECT_EQ(status_json(*table),
            "{\"version\":\"" + std::string(balance::kVersion) +
                "\",\"start_time\":1700000000,\"sampled_ms\":1700000001500,\"threads\":2,\"checks\":false,"
                "\"accepted_total\":9,\"refused_total\":1,\"log_lines_dropped_total\":0,"
                "\"log_lines_lost_total\":0,\"groups\":["
                "{\"group\":0,\"type\":\"round-robin\",\"channels\":["
                "{\"channel\":0,\"backend\":\"127.0.0.1:8081\",\"enabled\":true,\"up\":null,\"connections\":1,"
                "\"max_connections\":0,\"weight\":1,\"connections_total\":8,\"connect_failures_total\":0,"
                "\"sent_bytes_total\":300,\"received_bytes_total\":4000},"
                "{\"channel\":1,\"backend\":\"[::1]:8082\",\"enabled\":false,\"up\":null,\"connections\":0,"
                "\"max_connections\":8,\"weight\":2,\"connections_total\":1,\"connect_failures_total\":1,"
                "\"sent_bytes_total\":0,\"received_bytes_total\":0}]},"
                "{\"group\":2,\"type\":\"hash\",\"channels\":["
                "{\"channel\":0,\"backend\":\"10.0.0.1:80\",\"enabled\":true,\"up\":null,\"connections\":0,"
                "\"max_connections\":0,\"weight\":1,\"connections_total\":0,\"connect_failures_total\":0,"
                "\"sent_bytes_total\":0,\"received_bytes_total\":0}]}]}\n");
}

TEST(MetricsStatusJson, HealthIsTrueOrFalseWithChecksAndNullWithout) {
  auto table = metrics::testing::empty_table();
  table->append_channel(0, endpoint("127.0.0.1", 1), 0, true);
  table->append_channel(0, endpoint("127.0.0.1", 2), 0, true);
  table->groups[0].channels[1].health.store(static_cast<uint32_t>(core::Health::Down));
  EXPECT_EQ(count(status_json(*table), "\"up\":null"), 2u);

  table->header.flags.store(core::kFlagChecks);
  const std::string text = status_json(*table);
  EXPECT_NE(text.find("\"checks\":true"), std::string::npos);
  EXPECT_NE(text.find("\"backend\":\"127.0.0.1:1\",\"enabled\":true,\"up\":true"), std::string::npos);
  EXPECT_NE(text.find("\"backend\":\"127.0.0.1:2\",\"enabled\":true,\"up\":false"), std::string::npos);
}

TEST(MetricsStatusJson, LeastConnectionsGroupType) {
  auto table = metrics::testing::empty_table();
  table->groups[0].type.store(static_cast<uint32_t>(core::GroupType::LeastConn));
  table->append_channel(0, endpoint("127.0.0.1", 1), 0, true);
  EXPECT_NE(status_json(*table).find("\"type\":\"least-connections\""), std::string::npos);
}

TEST(MetricsStatusJson, StringsAreEscaped) {
  EXPECT_EQ(metrics::json_string("127.0.0.1:80"), "\"127.0.0.1:80\"");
  EXPECT_EQ(metrics::json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(metrics::json_string(std::string("\n\t\x01\x1f", 4)), "\"\\u000a\\u0009\\u0001\\u001f\"");
  EXPECT_EQ(metrics::json_string("caf\xc3\xa9"), "\"caf\xc3\xa9\"");  // UTF-8 passes through
}

TEST(MetricsStatusJson, CorruptTableIsClamped) {
  auto table = metrics::testing::empty_table();
  table->append_channel(1, endpoint("127.0.0.1", 1), 0, true);
  table->groups[1].nchannels.store(4000000000u);
  table->groups[1].type.store(1000);
  table->groups[1].channels[0].endpoint_seq.store(7);
  const std::string text = status_json(*table);
  EXPECT_EQ(count(text, "\"channel\":"), core::kMaxChannels);
  EXPECT_NE(text.find("{\"group\":1,\"type\":\"round-robin\""), std::string::npos);
  EXPECT_NE(text.find("{\"channel\":0,\"backend\":\"-\""), std::string::npos);
}

TEST(MetricsStatusJson, EmptyTable) {
  auto table = metrics::testing::empty_table();
  const std::string text = status_json(*table);
  EXPECT_NE(text.find("\"groups\":[]}\n"), std::string::npos);
}
