#include "metrics/prometheus.h"

#include <cstdint>

namespace balance::metrics {
namespace {

// One per-channel family: its name, help, type and how to read its value from a sample.
struct ChannelFamily {
  const char* name;
  const char* help;
  const char* type;
  uint64_t (*value)(const ChannelSample&);
};

constexpr ChannelFamily kChannelFamilies[] = {
    {"balance_channel_connections", "Connections the channel has open now.", "gauge",
     [](const ChannelSample& s) -> uint64_t { return s.connections; }},
    {"balance_channel_connections_total", "Connections the channel was given (every try counts).", "counter",
     [](const ChannelSample& s) -> uint64_t { return s.connections_total; }},
    {"balance_channel_connect_failures_total", "Connects to the channel's backend that failed.", "counter",
     [](const ChannelSample& s) -> uint64_t { return s.connect_failures; }},
    {"balance_channel_sent_bytes_total", "Bytes sent from clients to the backend.", "counter",
     [](const ChannelSample& s) -> uint64_t { return s.sent_bytes; }},
    {"balance_channel_received_bytes_total", "Bytes received from the backend for clients.", "counter",
     [](const ChannelSample& s) -> uint64_t { return s.received_bytes; }},
    {"balance_channel_enabled", "Admin state of the channel: 1 enabled, 0 disabled.", "gauge",
     [](const ChannelSample& s) -> uint64_t { return s.enabled ? 1 : 0; }},
    {"balance_channel_max_connections", "Connection limit of the channel (0 = unlimited).", "gauge",
     [](const ChannelSample& s) -> uint64_t { return s.max_connections; }},
    {"balance_channel_weight", "Weight of the channel in its group.", "gauge",
     [](const ChannelSample& s) -> uint64_t { return s.weight; }},
};

constexpr ChannelFamily kHealthFamily = {
    "balance_channel_up", "Health of the channel as the health checks see it: 1 up, 0 down.", "gauge",
    [](const ChannelSample& s) -> uint64_t { return s.up ? 1 : 0; }};

void family_header(std::string& out, const char* name, const char* help, const char* type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample_line(std::string& out, const char* name, const std::string& labels, uint64_t value) {
  out += name;
  out += labels;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

std::string channel_labels(const GroupSample& g, const ChannelSample& c) {
  return "{group=\"" + std::to_string(g.index) + "\",channel=\"" + std::to_string(c.index) + "\",backend=\"" +
         escape_label_value(c.backend()) + "\"}";
}

void channel_family(std::string& out, const Snapshot& snap, const std::vector<std::string>& labels,
                    const ChannelFamily& f) {
  family_header(out, f.name, f.help, f.type);
  size_t i = 0;
  for (const GroupSample& g : snap.groups) {
    for (const ChannelSample& c : g.channels) sample_line(out, f.name, labels[i++], f.value(c));
  }
}

void process_families(std::string& out, const Snapshot& snap) {
  family_header(out, "balance_build_info", "Version of balance (the value is always 1).", "gauge");
  sample_line(out, "balance_build_info", "{version=\"" + escape_label_value(snap.version) + "\"}", 1);
  family_header(out, "balance_start_time_seconds", "Start time of the instance since the epoch, in seconds (kept across upgrades).",
                "gauge");
  out += "balance_start_time_seconds " + std::to_string(snap.start_time) + "\n";
  family_header(out, "balance_worker_threads", "Worker threads serving connections.", "gauge");
  sample_line(out, "balance_worker_threads", "", snap.threads);
  family_header(out, "balance_accepted_connections_total", "Client connections accepted.", "counter");
  sample_line(out, "balance_accepted_connections_total", "", snap.accepted_total);
  family_header(out, "balance_refused_connections_total",
                "Accepted client connections that no channel would take.", "counter");
  sample_line(out, "balance_refused_connections_total", "", snap.refused_total);
  family_header(out, "balance_log_lines_dropped_total",
                "Log lines dropped because the log's reader was not keeping up.", "counter");
  sample_line(out, "balance_log_lines_dropped_total", "", snap.log_lines_dropped);
  family_header(out, "balance_log_lines_lost_total",
                "Log lines the log's destination did not take whole (a write error, such as a full disk).",
                "counter");
  sample_line(out, "balance_log_lines_lost_total", "", snap.log_lines_lost);
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char ch : value) {
    if (ch == '\\') {
      out += "\\\\";
    } else if (ch == '"') {
      out += "\\\"";
    } else if (ch == '\n') {
      out += "\\n";
    } else {
      out += ch;
    }
  }
  return out;
}

std::string format_prometheus(const Snapshot& snap) {
  std::vector<std::string> labels;  // built once, used by every family
  for (const GroupSample& g : snap.groups) {
    for (const ChannelSample& c : g.channels) labels.push_back(channel_labels(g, c));
  }
  std::string out;
  out.reserve(1024 + labels.size() * 9 * 128);
  process_families(out, snap);
  for (const ChannelFamily& f : kChannelFamilies) channel_family(out, snap, labels, f);
  if (snap.checks_on) channel_family(out, snap, labels, kHealthFamily);
  return out;
}

}  // namespace balance::metrics
