// A small, reentrant, table-driven getopt: walks argv and yields the options it finds, with no
// global state. Short options cluster (`-fdp`), take an argument attached (`-t5`) or as the next
// word (`-t 5`); long options take `--name=value` or `--name value`. Options end at the first
// operand, at `--` (consumed), or at a lone `-` (an operand).
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace balance::cli {

// One option the scanner recognizes. `id` is the caller's tag for it.
struct OptionDef {
  int id = 0;
  char short_name = '\0';       // '\0': long only
  std::string_view long_name;   // empty: short only
  std::string_view arg_name;    // empty: takes no argument; otherwise shown in the usage text
  std::string_view help;        // one line for the usage text
};

struct ScanItem {
  enum class Kind {
    Option,  // `option` found, `value` is its argument (empty if it takes none)
    End,     // options are over; operands start at ArgScanner::operand_index()
    Error,   // `error` says what is wrong (unknown option, missing argument...); callers stop
  };
  Kind kind = Kind::End;
  const OptionDef* option = nullptr;
  std::string_view value;
  std::string error;  // one line, no trailing newline
};

class ArgScanner {
 public:
  // `argv` (argc words, argv[0] the program name) and `defs` must outlive the scanner.
  ArgScanner(int argc, const char* const* argv, std::span<const OptionDef> defs);

  // The next option, End once options are over (End again on every later call), or Error.
  ScanItem next();
  // Index in argv of the first operand; meaningful once next() returned End.
  int operand_index() const { return index_; }

 private:
  ScanItem next_short();
  ScanItem next_long(std::string_view body);  // body: the word without "--"
  const OptionDef* find_short(char c) const;
  const OptionDef* find_long(std::string_view name) const;

  int argc_;
  const char* const* argv_;
  std::span<const OptionDef> defs_;
  int index_ = 1;        // argv word being scanned
  size_t pos_ = 0;       // inside a short-option cluster: next character; 0 = not in one
  std::string_view word_;  // the cluster being scanned (argv_[index_]) while pos_ != 0
  bool done_ = false;
};

// An argument made safe to quote in a one-line message: control and non-ASCII bytes shown as
// \xNN, and cut after `max_len` bytes with "..." appended.
std::string printable(std::string_view arg, size_t max_len = 80);

}  // namespace balance::cli
