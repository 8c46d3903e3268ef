#include "net/send_ring.h"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "log/log.h"

namespace balance::net {
namespace {

constexpr unsigned kEntries = 256;  // sends per submission; more are submitted in several

bool disabled_by_environment() {
  const char* v = std::getenv("BALANCE_IO_URING");
  return v != nullptr && std::strcmp(v, "0") == 0;
}

}  // namespace

SendRing::SendRing() = default;

SendRing::~SendRing() {
  if (ring_) io_uring_queue_exit(ring_.get());
}

bool SendRing::enable() {
  if (tried_) return enabled();
  tried_ = true;
  if (disabled_by_environment()) return false;
  auto ring = std::make_unique<io_uring>();
  // A ring of this thread's own (DEFER_TASKRUN: the kernel does no work for it behind our back);
  // kernels before 6.1 know neither flag, and take a plain ring.
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int r = io_uring_queue_init_params(kEntries, ring.get(), &params);
  if (r == -EINVAL) {
    params = io_uring_params{};
    r = io_uring_queue_init_params(kEntries, ring.get(), &params);
  }
  if (r < 0) {
    BALANCE_DEBUG("io_uring not available (%s): sending with send()", std::strerror(-r));
    return false;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(ring.get());
  const bool can_send = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SEND);
  io_uring_free_probe(probe);
  if (!can_send) {
    BALANCE_DEBUG("io_uring cannot send on this kernel: sending with send()");
    io_uring_queue_exit(ring.get());
    return false;
  }
  ring_ = std::move(ring);
  arena_.reset(new unsigned char[kArenaSize]);
  return true;
}

unsigned char* SendRing::reserve(size_t len) {
  if (arena_used_ + len > kArenaSize) submit();
  return arena_.get() + arena_used_;
}

void SendRing::queue(int fd, const unsigned char* data, size_t len, int flags, Waiter& waiter) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {  // the submission queue is full: send those first
    submit();
    sqe = io_uring_get_sqe(ring_.get());
  }
  io_uring_prep_send(sqe, fd, data, len, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, &waiter);
  ++queued_;
  if (data >= arena_.get() && data < arena_.get() + kArenaSize) arena_used_ = static_cast<size_t>(data - arena_.get()) + len;
}

void SendRing::submit() {
  while (queued_ > 0) {
    // Every send completes while it is submitted (MSG_DONTWAIT), so this returns at once.
    const int r = io_uring_submit_and_wait(ring_.get(), queued_);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      std::fprintf(stderr, "balance: io_uring_enter: %s\n", std::strerror(-r));
      std::abort();  // the ring itself is broken: a bug, not a condition of the peers
    }
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring_.get(), head, cqe) {
      auto* waiter = static_cast<Waiter*>(io_uring_cqe_get_data(cqe));
      waiter->on_sent(cqe->res);
      if (!waiter->ready_) {
        waiter->ready_ = true;
        ready_.push_back(waiter);
      }
      ++seen;
    }
    io_uring_cq_advance(ring_.get(), seen);
    queued_ -= seen;
  }
  arena_used_ = 0;
}

void SendRing::flush() {
  std::vector<Waiter*> batch;
  while (!idle()) {
    submit();
    batch.swap(ready_);
    // A waiter is never destroyed during a flush (owners die between turns, EventLoop::defer),
    // but it may have been taken off the list (forget) since.
    for (Waiter* w : batch) {
      if (!w->ready_) continue;
      w->ready_ = false;
      w->resume();
    }
    batch.clear();
  }
}

void SendRing::forget(Waiter& waiter) {
  if (!waiter.ready_) return;
  waiter.ready_ = false;
  // (During a flush it may be in the batch being resumed instead, which skips it by the flag.)
  if (auto it = std::find(ready_.begin(), ready_.end(), &waiter); it != ready_.end()) ready_.erase(it);
}

}  // namespace balance::net
