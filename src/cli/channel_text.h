// The syntax of a channel on the command line, before anything is resolved:
//   host[:port[:maxc[:weight]]]      host a name or IPv4 address
//   [addr][:port[:maxc[:weight]]]    addr an IPv6 address (or any host) in brackets
// An empty field means its default (port: the listening port, maxc: 0, weight: 1).
#pragma once

#include <string>
#include <string_view>

namespace balance::cli {

struct ChannelText {
  std::string_view host;  // without the brackets
  std::string_view port;
  std::string_view maxc;
  std::string_view weight;
  std::string error;  // non-empty: the text is malformed; a short reason, e.g. "missing ']'"
};

// Splits `text` into its fields (views into `text`). Pure.
ChannelText split_channel(std::string_view text);

}  // namespace balance::cli
