// Where the shell's command lines come from: GNU readline on a terminal (line editing, history,
// completion of command names), plain bounded reads from a pipe or file otherwise.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace balance::ctl {

enum class InputStatus { Line, TooLong, End };

class Input {
 public:
  virtual ~Input() = default;
  // Shows `prompt` and reads one line (without its newline) into `line`. TooLong: a line over
  // kMaxLineLength was read and dropped. End: end of input.
  virtual InputStatus read(const std::string& prompt, std::string& line) = 0;
  // After End: the input already ended the prompt's line on the screen (readline does when it
  // turns bracketed paste off), so the shell's closing newline would leave an empty line.
  virtual bool ended_the_line() const { return false; }
};

// Readline on the terminal that is standard input; the prompt goes to standard output.
std::unique_ptr<Input> terminal_input();
// Lines read from `fd`; the prompt is written to standard output first (unbuffered).
std::unique_ptr<Input> stream_input(int fd);

// Writes all of `text` to standard output, unbuffered; false if it could not (EPIPE...).
bool write_stdout(std::string_view text);

}  // namespace balance::ctl
