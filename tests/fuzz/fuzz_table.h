// Shared pieces of the fuzz targets: an invariant check, a channel table with a few groups of
// each type, and a reader that takes bytes off the front of a fuzz input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/endpoint.h"
#include "core/table.h"

// A broken invariant: says which, then aborts (libFuzzer keeps the input as a crash).
#define check(ok)                                                                        \
  do {                                                                                   \
    if (!(ok)) {                                                                         \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #ok);   \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace balance::fuzz {

inline core::Endpoint endpoint(const char* address, uint16_t port) {
  return core::Endpoint::from_numeric(address, port).value_or(core::Endpoint{});
}

// Group 0: round robin, three channels (one IPv6, one with maxc 2); group 1: hash, three
// channels with weights; group 2: least connections, two channels; group 3: one channel.
inline void fill_sample_table(core::Table& t) {
  t.groups[0].type.store(static_cast<uint32_t>(core::GroupType::RoundRobin));
  t.append_channel(0, endpoint("127.0.0.1", 1001), 0, true);
  t.append_channel(0, endpoint("127.0.0.1", 1002), 2, true);
  t.append_channel(0, endpoint("::1", 1003), 0, true);
  t.groups[1].type.store(static_cast<uint32_t>(core::GroupType::Hash));
  t.append_channel(1, endpoint("127.0.0.2", 2001), 0, true, 3);
  t.append_channel(1, endpoint("127.0.0.3", 2002), 0, true, 1);
  t.append_channel(1, endpoint("::ffff:127.0.0.4", 2003), 5, false, 2);
  t.groups[2].type.store(static_cast<uint32_t>(core::GroupType::LeastConn));
  t.append_channel(2, endpoint("127.0.0.5", 3001), 0, true, 2);
  t.append_channel(2, endpoint("127.0.0.6", 3002), 1, true, 1);
  t.append_channel(3, endpoint("10.0.0.1", 4001), 0, true);
}

// Takes bytes off the front of a fuzz input; past the end, zeros.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t left() const { return size_ - pos_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string_view bytes(size_t n) {
    n = n < left() ? n : left();
    std::string_view v(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return v;
  }
  std::string_view rest() { return bytes(left()); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace balance::fuzz
