// The control command language (COMPAT.md, "Control commands"): command names with their
// prefix abbreviations and tie order, tokenizing, and bounded number parsing. Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace balance::ctl {

inline constexpr size_t kMaxLineLength = 1024;  // longer command lines are refused unparsed
inline constexpr size_t kMaxTokens = 8;         // tokens past this are ignored like any extra ones

enum class Command {
  Quit, Show, Help, Kill, Disable, Group, Reset, Enable, Create, Assign, Maxc, MrtgBytes, MrtgConns,
  Version, Hash, Rr,
  Weight, Lc,  // beyond 3.57: channel weights and least-connections groups
};

// The command `word` abbreviates: the first command of the tie order (quit, show, help, ?, kill,
// disable, group, reset, enable, create, assign, maxc, mrtg-bytes, mrtg-conns, version, hash,
// rr, then the additions weight, lc) that starts with it. "?" is help. nullopt for an empty or
// unknown word.
std::optional<Command> match_command(std::string_view word);

// The full command names, in help order: the classic ones, then the additions (for completion).
const std::vector<std::string_view>& command_names();

// Splits on blanks (space, tab, CR, LF, VT, FF); at most kMaxTokens tokens.
std::vector<std::string_view> tokenize(std::string_view line);

enum class NumberStatus { Ok, Syntax, Range };
struct Number {
  NumberStatus status = NumberStatus::Syntax;
  uint64_t value = 0;
};

// A decimal number 0..max. Digits with an optional leading '-' are a number (too large or
// negative: Range); anything else is Syntax.
Number parse_number(std::string_view text, uint64_t max);

}  // namespace balance::ctl
