#include "ctl/input.h"

#include <unistd.h>

#include <cerrno>

#include "ctl/commands.h"
#include "ctl/line_reader.h"

namespace balance::ctl {
namespace {

class StreamInput final : public Input {
 public:
  explicit StreamInput(int fd) : reader_(fd, kMaxLineLength) {}
  InputStatus read(const std::string& prompt, std::string& line) override {
    write_stdout(prompt);
    return reader_.next(line);
  }

 private:
  LineReader reader_;
};

}  // namespace

std::unique_ptr<Input> stream_input(int fd) { return std::make_unique<StreamInput>(fd); }

bool write_stdout(std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace balance::ctl
