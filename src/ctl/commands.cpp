#include "ctl/commands.h"

#include <array>
#include <utility>

namespace balance::ctl {
namespace {

// The tie order of COMPAT.md: the first entry a prefix matches wins.
constexpr std::array<std::pair<std::string_view, Command>, 19> kTieOrder{{
    {"quit", Command::Quit},
    {"show", Command::Show},
    {"help", Command::Help},
    {"?", Command::Help},
    {"kill", Command::Kill},
    {"disable", Command::Disable},
    {"group", Command::Group},
    {"reset", Command::Reset},
    {"enable", Command::Enable},
    {"create", Command::Create},
    {"assign", Command::Assign},
    {"maxc", Command::Maxc},
    {"mrtg-bytes", Command::MrtgBytes},
    {"mrtg-conns", Command::MrtgConns},
    {"version", Command::Version},
    {"hash", Command::Hash},
    {"rr", Command::Rr},
    {"weight", Command::Weight},
    {"lc", Command::Lc},
}};

bool is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f'; }

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (const char ch : text) {
    if (ch < '0' || ch > '9') return false;
  }
  return true;
}

}  // namespace

std::optional<Command> match_command(std::string_view word) {
  if (word.empty()) return std::nullopt;
  for (const auto& [name, command] : kTieOrder) {
    if (name.substr(0, word.size()) == word) return command;
  }
  return std::nullopt;
}

const std::vector<std::string_view>& command_names() {
  static const std::vector<std::string_view> names{
      "create", "assign", "disable", "enable", "group", "hash", "help", "kill",
      "maxc", "mrtg-bytes", "mrtg-conns", "quit", "reset", "rr", "show", "version", "lc", "weight"};
  return names;
}

std::vector<std::string_view> tokenize(std::string_view line) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < line.size() && tokens.size() < kMaxTokens) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

Number parse_number(std::string_view text, uint64_t max) {
  const bool negative = !text.empty() && text[0] == '-';
  const std::string_view digits = negative ? text.substr(1) : text;
  if (!all_digits(digits)) return {NumberStatus::Syntax, 0};
  uint64_t value = 0;
  for (const char ch : digits) {
    const auto digit = static_cast<uint64_t>(ch - '0');
    if (digit > max || value > (max - digit) / 10) return {NumberStatus::Range, 0};
    value = value * 10 + digit;
  }
  if (negative && value != 0) return {NumberStatus::Range, 0};
  return {NumberStatus::Ok, value};
}

}  // namespace balance::ctl
