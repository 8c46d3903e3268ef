// A ring of provided buffers (IORING_REGISTER_PBUF_RING, buffer group `group`) for multishot
// recvs: the kernel picks a buffer per completion, the program hands it back once done with it.
// liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring(), hence this small class.
#pragma once

#include <liburing.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

class ProvidedBuffers {
 public:
  // All `count` buffers (a power of two) of `size` bytes start out with the kernel.
  ProvidedBuffers(io_uring& ring, unsigned count, unsigned size, uint16_t group = 0)
      : count_(count), size_(size), data_(std::make_unique<char[]>(size_t{count} * size)) {
    void* mem = mmap(nullptr, ring_bytes(), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) fail("mmap", errno);
    ring_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(ring_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uintptr_t>(mem);
    reg.ring_entries = count;
    reg.bgid = group;
    if (int r = io_uring_register_buf_ring(&ring, &reg, 0); r < 0) fail("io_uring_register_buf_ring", -r);
    for (unsigned i = 0; i < count; ++i) give_back(static_cast<uint16_t>(i));
  }
  ~ProvidedBuffers() { munmap(ring_, ring_bytes()); }  // (after the ring is gone, or unregistered)
  ProvidedBuffers(const ProvidedBuffers&) = delete;
  ProvidedBuffers& operator=(const ProvidedBuffers&) = delete;

  char* buf(uint16_t bid) { return data_.get() + size_t{bid} * size_; }
  // The buffer a completion's flags name (IORING_CQE_F_BUFFER set).
  static uint16_t id(unsigned cqe_flags) { return static_cast<uint16_t>(cqe_flags >> IORING_CQE_BUFFER_SHIFT); }
  void give_back(uint16_t bid) {
    io_uring_buf_ring_add(ring_, buf(bid), size_, bid, io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(ring_, 1);
  }

 private:
  size_t ring_bytes() const { return count_ * sizeof(io_uring_buf); }
  [[noreturn]] static void fail(const char* what, int err) {
    errno = err;
    std::perror(what);
    std::exit(1);
  }

  unsigned count_, size_;
  std::unique_ptr<char[]> data_;
  io_uring_buf_ring* ring_ = nullptr;
};
