#include "net/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace balance::net {

Pipe PipePool::acquire() {
  if (!idle_.empty()) {
    Pipe p = std::move(idle_.back());
    idle_.pop_back();
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return Pipe{};
  Pipe p{Fd(fds[0]), Fd(fds[1])};
  ::fcntl(p.write_end.get(), F_SETPIPE_SZ, kCapacity);
  return p;
}

void PipePool::release(Pipe pipe, bool empty) {
  if (pipe && empty && idle_.size() < kMaxIdle) idle_.push_back(std::move(pipe));
  // Otherwise the pipe closes here: bytes left in it belonged to a connection that is gone.
}

}  // namespace balance::net
