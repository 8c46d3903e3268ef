// Pipes for splice(): a direction that streams moves its bytes socket -> pipe -> socket inside
// the kernel instead of copying them through user space. A pipe is taken from the worker's pool
// while bytes are in flight and given back once it is empty, so idle connections hold none;
// the worker empties the pool when its last connection ends.
//
// Threading: one pool per worker thread, used only there.
#pragma once

#include <vector>

#include "net/fd.h"

namespace balance::net {

struct Pipe {
  Fd read_end;
  Fd write_end;
  explicit operator bool() const { return read_end.valid(); }
};

class PipePool {
 public:
  static constexpr size_t kMaxIdle = 64;  // pipes kept for reuse; more are closed
  // Capacity asked for (F_SETPIPE_SZ): fewer splice() calls and wake-ups per byte than the
  // default 64 KiB. A pipe holds references to socket pages, not copies. When the system's
  // limits refuse it (fs.pipe-max-size, fs.pipe-user-pages-soft), the pipe keeps its default.
  static constexpr int kCapacity = 256 * 1024;

  // An empty pipe, or an invalid one when none can be created (out of descriptors: the caller
  // keeps copying).
  Pipe acquire();
  // Takes back a pipe; `empty` says whether it holds no bytes (only empty pipes are reused).
  void release(Pipe pipe, bool empty);
  size_t idle() const { return idle_.size(); }
  // Closes every idle pipe (when no connection is left, descriptors go back to their baseline).
  void clear() { idle_.clear(); }

 private:
  std::vector<Pipe> idle_;
};

}  // namespace balance::net
