// Splits a byte stream (a pipe, a file) into lines of bounded length. No allocation grows
// with the input: a line over the bound is dropped while it is read.
#pragma once

#include <cstddef>
#include <string>

#include "ctl/input.h"

namespace balance::ctl {

class LineReader {
 public:
  // Reads `fd` (not owned); lines longer than `max_length` bytes come back as TooLong.
  LineReader(int fd, size_t max_length);

  // The next line without its '\n' (a last line without one counts too), or End.
  InputStatus next(std::string& line);

 private:
  bool fill();  // one read(); false at end of input or on an error

  int fd_;
  size_t max_length_;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace balance::ctl
