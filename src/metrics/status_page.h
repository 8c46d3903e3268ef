// The HTML status page served at GET /: self-contained (inline style and script, no other host),
// it polls /status.json about once a second and shows every group and channel with its state,
// counters, rates and small charts of the recent rates.
#pragma once

#include <string_view>

namespace balance::metrics {

// The whole page. Constant.
std::string_view status_page_html();

}  // namespace balance::metrics
