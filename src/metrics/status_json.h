// The JSON form of a snapshot: what GET /status.json serves and the status page polls.
//
//   {"version":"4.0.0","start_time":S,"sampled_ms":MS,"threads":N,"checks":false,
//    "accepted_total":N,"refused_total":N,
//    "groups":[{"group":0,"type":"round-robin","channels":[{"channel":0,
//      "backend":"127.0.0.1:8081","enabled":true,"up":null,"connections":0,
//      "max_connections":0,"weight":1,"connections_total":0,"connect_failures_total":0,
//      "sent_bytes_total":0,"received_bytes_total":0}]}]}
//
// "up" is null when health checks are off. Field names follow the Prometheus series.
#pragma once

#include <string>
#include <string_view>

#include "metrics/snapshot.h"

namespace balance::metrics {

// The whole document, on one line, newline-terminated. Pure.
std::string format_status_json(const Snapshot& snap);

// `value` as a JSON string literal, quotes included (control characters as \u00XX).
std::string json_string(std::string_view value);

}  // namespace balance::metrics
