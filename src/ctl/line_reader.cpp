#include "ctl/line_reader.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace balance::ctl {

LineReader::LineReader(int fd, size_t max_length) : fd_(fd), max_length_(max_length) {}

bool LineReader::fill() {
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking input (O_NONBLOCK is the open file's, shared with whoever set it): no
      // input yet is not the end of it. Wait for some, or for the hang-up, as read would.
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, -1) >= 0 || errno == EINTR) continue;
    }
    eof_ = true;  // end of input, or an error that ends it just the same
    return false;
  }
}

InputStatus LineReader::next(std::string& line) {
  bool dropping = false;  // inside a line that is already too long
  for (;;) {
    const size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      const bool too_long = dropping || nl > max_length_;
      if (!too_long) line.assign(buf_, 0, nl);
      buf_.erase(0, nl + 1);
      return too_long ? InputStatus::TooLong : InputStatus::Line;
    }
    if (buf_.size() > max_length_) {
      dropping = true;
      buf_.clear();
    }
    if (eof_ || !fill()) break;
  }
  if (dropping) {
    buf_.clear();  // the last of the overlong line, read after the bound was passed
    return InputStatus::TooLong;
  }
  if (buf_.empty()) return InputStatus::End;
  line.swap(buf_);
  buf_.clear();
  return InputStatus::Line;
}

}  // namespace balance::ctl
