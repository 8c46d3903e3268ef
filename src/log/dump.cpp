#include "log/dump.h"

#include "log/log.h"

namespace balance::log {

namespace {

constexpr size_t kWrapColumns = 80;  // a line break once a line has more columns than this

}  // namespace

std::string format_dump(Direction dir, const unsigned char* data, size_t len) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = dir == Direction::FromClient ? "-> " : "-< ";
  out += std::to_string(len);
  out += '\n';
  out.reserve(out.size() + len * 3 + len / 26 + 2);
  size_t column = 0;
  for (size_t i = 0; i < len; ++i) {
    const unsigned char b = data[i];
    if (b == '\\') {
      out += "\\\\";
      column += 2;
    } else if (b >= 0x20 && b <= 0x7E) {
      out += static_cast<char>(b);
      column += 1;
    } else {
      out += '\\';
      out += kHex[b >> 4];
      out += kHex[b & 0x0F];
      column += 3;
      if (b == '\n') {  // a newline in the data ends the output line too
        out += '\n';
        column = 0;
      }
    }
    if (column > kWrapColumns) {
      out += '\n';
      column = 0;
    }
  }
  out += '\n';
  return out;
}

void dump(Direction dir, const unsigned char* data, size_t len) { write_stdout(format_dump(dir, data, len)); }

}  // namespace balance::log
