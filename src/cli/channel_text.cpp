#include "cli/channel_text.h"

#include "cli/values.h"

namespace balance::cli {

namespace {

// Splits "port[:maxc[:weight]]" (the part after the host and its colon) into `out`.
void split_fields(std::string_view rest, ChannelText& out) {
  std::string_view* fields[] = {&out.port, &out.maxc, &out.weight};
  for (size_t i = 0; i < 3; ++i) {
    const size_t colon = rest.find(':');
    *fields[i] = rest.substr(0, colon);
    if (colon == std::string_view::npos) return;
    rest.remove_prefix(colon + 1);
  }
  out.error = "too many ':' fields (host[:port[:maxc[:weight]]]; IPv6 addresses go in brackets)";
}

}  // namespace

ChannelText split_channel(std::string_view text) {
  ChannelText out;
  std::string_view rest;
  bool has_rest = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      out.error = "missing ']'";
      return out;
    }
    out.host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      out.error = "unexpected text after ']'";
      return out;
    }
    has_rest = !rest.empty();
    if (has_rest) rest.remove_prefix(1);
  } else {
    const size_t colon = text.find(':');
    out.host = text.substr(0, colon);
    has_rest = colon != std::string_view::npos;
    if (has_rest) rest = text.substr(colon + 1);
  }
  if (out.host.empty()) {
    out.error = "missing host";
  } else if (out.host.size() > kMaxHostLength) {
    out.error = "host longer than " + std::to_string(kMaxHostLength) + " characters";
  } else if (has_rest) {
    split_fields(rest, out);
  }
  return out;
}

}  // namespace balance::cli
