#include "ctl/input.h"

#include <unistd.h>

#include <cerrno>

#include "ctl/commands.h"
#include "ctl/line_reader.h"
#include "log/log.h"

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

// A full non-blocking stdout (O_NONBLOCK is the open file's, shared with whoever set it) is
// waited for, as a blocking write would be: log::write_fully() does that.
bool write_stdout(std::string_view text) { return log::write_fully(STDOUT_FILENO, text) == text.size(); }

}  // namespace balance::ctl
