// The sends of one turn of a worker's event loop, submitted together: one io_uring_enter for all
// the bytes the turn's reads produced, where send() would take one syscall each.
//
// Why: each send() to a sleeping peer wakes it, and on a busy machine the woken peer may take
// the CPU from the worker when that syscall returns, before the worker has handled the rest of
// its batch. Sent together, the wake-ups happen inside one syscall and the worker finishes its
// batch first (docs/PERFORMANCE.md has the measurements).
//
// Reads stay plain syscalls after epoll's readiness: a read armed in advance could start at an
// urgent mark unannounced and lose the urgent byte's place (relay.h).
//
// Every send is MSG_DONTWAIT, so each completes while it is submitted: a full socket answers
// -EAGAIN at once rather than waiting in the kernel. Nothing is left in flight between two
// turns, so a descriptor is never named by a submission once its owner has moved on.
//
// Threading: one per worker, used on the worker's thread only. The ring is set up on first use
// (on that thread); when the kernel refuses io_uring (too old, kernel.io_uring_disabled, a seccomp
// filter) or BALANCE_IO_URING=0 is set, enable() returns false and the relay sends by itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

struct io_uring;

namespace balance::net {

class SendRing {
 public:
  // Told the outcome of its send (bytes sent, or -errno), then asked to go on.
  class Waiter {
   public:
    virtual void on_sent(int result) = 0;  // only records: no I/O, no callbacks of its own
    virtual void resume() = 0;             // may read, send, queue sends and close

   protected:
    ~Waiter() = default;

   private:
    friend class SendRing;
    bool ready_ = false;  // on the ready list: its result is in, resume() is due
  };

  // Bytes the turn's reads may take from the arena (each read takes at most this much).
  static constexpr size_t kArenaSize = 256 * 1024;

  SendRing();
  ~SendRing();
  SendRing(const SendRing&) = delete;
  SendRing& operator=(const SendRing&) = delete;

  // Sets up the ring (once; on the loop's thread). False when io_uring cannot be had: the
  // caller sends by itself.
  bool enable();
  bool enabled() const { return ring_ != nullptr; }

  // Room for one read of `len` bytes whose data will be queued: submits what is queued first
  // when the arena is short of it. Valid until the next submit().
  unsigned char* reserve(size_t len);
  // Queues a send of data[0, len) (in the arena, from reserve()) to `fd`; `waiter` hears of it.
  // `flags` are send() flags; MSG_DONTWAIT and MSG_NOSIGNAL are added.
  void queue(int fd, const unsigned char* data, size_t len, int flags, Waiter& waiter);

  // Submits what is queued and hands out the results (on_sent). Any time; no waiter is resumed.
  void submit();
  // submit(), then resume() every waiter whose result is in, until nothing is queued: the end
  // of a loop turn.
  void flush();
  // Takes a waiter off the ready list (its owner is going away). It must have nothing queued.
  void forget(Waiter& waiter);

  bool idle() const { return queued_ == 0 && ready_.empty(); }

 private:
  std::unique_ptr<io_uring> ring_;
  bool tried_ = false;
  std::unique_ptr<unsigned char[]> arena_;
  size_t arena_used_ = 0;
  unsigned queued_ = 0;
  std::vector<Waiter*> ready_;
};

}  // namespace balance::net
