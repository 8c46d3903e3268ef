#include "ctl/input.h"

#include <poll.h>
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
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking stdout (O_NONBLOCK is the open file's, shared with whoever set it) that
      // is full: wait until it takes more, or fails, as a blocking write would.
      pollfd p{STDOUT_FILENO, POLLOUT, 0};
      if (::poll(&p, 1, -1) >= 0 || errno == EINTR) continue;
    }
    if (n <= 0) return false;
    text.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace balance::ctl
