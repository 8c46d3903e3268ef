// The Prometheus text exposition format (version 0.0.4) of a snapshot: what GET /metrics serves.
#pragma once

#include <string>
#include <string_view>

#include "metrics/snapshot.h"

namespace balance::metrics {

// The Content-Type of the exposition.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// Every metric family, each with its HELP and TYPE lines, samples labelled
// {group="G",channel="C",backend="ADDR:PORT"} for channels. balance_channel_up only when health
// checks are on. Pure.
std::string format_prometheus(const Snapshot& snap);

// A label value escaped as the format says: backslash, double quote and newline.
std::string escape_label_value(std::string_view value);

}  // namespace balance::metrics
