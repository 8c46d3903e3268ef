#include "metrics/status_json.h"

#include <cstdio>

namespace balance::metrics {
namespace {

void field(std::string& out, const char* name, const std::string& json_value) {
  out += '"';
  out += name;
  out += "\":";
  out += json_value;
}

std::string number(uint64_t v) { return std::to_string(v); }
std::string boolean(bool v) { return v ? "true" : "false"; }

std::string channel_json(const ChannelSample& c, bool checks_on) {
  std::string out = "{";
  field(out, "channel", number(c.index));
  out += ',';
  field(out, "backend", json_string(c.backend()));
  out += ',';
  field(out, "enabled", boolean(c.enabled));
  out += ',';
  field(out, "up", checks_on ? boolean(c.up) : "null");
  out += ',';
  field(out, "connections", number(c.connections));
  out += ',';
  field(out, "max_connections", number(c.max_connections));
  out += ',';
  field(out, "weight", number(c.weight));
  out += ',';
  field(out, "connections_total", number(c.connections_total));
  out += ',';
  field(out, "connect_failures_total", number(c.connect_failures));
  out += ',';
  field(out, "sent_bytes_total", number(c.sent_bytes));
  out += ',';
  field(out, "received_bytes_total", number(c.received_bytes));
  out += '}';
  return out;
}

std::string group_json(const GroupSample& g, bool checks_on) {
  std::string out = "{";
  field(out, "group", number(g.index));
  out += ',';
  field(out, "type", json_string(group_type_name(g.type)));
  out += ",\"channels\":[";
  for (size_t i = 0; i < g.channels.size(); ++i) {
    if (i) out += ',';
    out += channel_json(g.channels[i], checks_on);
  }
  out += "]}";
  return out;
}

}  // namespace

std::string json_string(std::string_view value) {
  std::string out = "\"";
  for (const char ch : value) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", u);
      out += esc;
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

std::string format_status_json(const Snapshot& snap) {
  std::string out = "{";
  field(out, "version", json_string(snap.version));
  out += ',';
  field(out, "start_time", std::to_string(snap.start_time));
  out += ',';
  field(out, "sampled_ms", std::to_string(snap.sampled_ms));
  out += ',';
  field(out, "threads", number(snap.threads));
  out += ',';
  field(out, "checks", boolean(snap.checks_on));
  out += ',';
  field(out, "accepted_total", number(snap.accepted_total));
  out += ',';
  field(out, "refused_total", number(snap.refused_total));
  out += ',';
  field(out, "log_lines_dropped_total", number(snap.log_lines_dropped));
  out += ',';
  field(out, "log_lines_lost_total", number(snap.log_lines_lost));
  out += ",\"groups\":[";
  for (size_t i = 0; i < snap.groups.size(); ++i) {
    if (i) out += ',';
    out += group_json(snap.groups[i], snap.checks_on);
  }
  out += "]}\n";
  return out;
}

}  // namespace balance::metrics
