#include "net/relay.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace balance::net {

void Side::note(uint32_t events) {
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hangup = true;
  if (events & EPOLLPRI) urgent = true;
  if (events & EPOLLRDHUP) fin = true;
  if (events & EPOLLERR) error = true;
}

PumpStatus Direction::fail(int err, bool at_source) {
  error_ = err;
  failed_at_source_ = at_source;
  return PumpStatus::Failed;
}

// Writes until `left` is 0 or the destination is full: `write(left)` is one send() or splice()
// that returns what it moved, or -1 with errno.
template <typename Write>
PumpStatus Direction::write_out(size_t& left, Write write) {
  while (left > 0) {
    if (!dst_.writable) return PumpStatus::Waiting;
    const ssize_t n = write(left);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return fail(errno, false);
      dst_.writable = false;
      return PumpStatus::Waiting;
    }
    wrote_ = true;
    moved_ = true;  // a slow destination taking what waited for it is traffic too
    left -= static_cast<size_t>(n);
    if (left > 0) dst_.writable = false;  // a short write: the send buffer is full
  }
  return PumpStatus::Done;
}

// Sends what is buffered, then a waiting urgent byte. Waiting while the destination is full.
PumpStatus Direction::flush() {
  const PumpStatus sent = write_out(pending_len_, [this](size_t left) {
    const ssize_t n = ::send(dst_.fd.get(), pending_.get() + pending_off_, left, send_flags());
    if (n > 0) pending_off_ += static_cast<size_t>(n);
    return n;
  });
  if (sent != PumpStatus::Done) return sent;
  pending_.reset();  // nothing in flight: give the memory back
  pending_off_ = 0;
  if (const PumpStatus piped = flush_pipe(); piped != PumpStatus::Done) return piped;
  size_t urgent = have_urgent_ ? 1 : 0;
  const PumpStatus oob = write_out(urgent, [this](size_t) {
    return ::send(dst_.fd.get(), &urgent_byte_, 1, MSG_OOB | MSG_NOSIGNAL);
  });
  have_urgent_ = urgent > 0;
  return oob;
}

// Moves the pipe's bytes on to the destination; gives the pipe back once it is empty.
PumpStatus Direction::flush_pipe() {
  const PumpStatus moved = write_out(in_pipe_, [this](size_t left) {
    return ::splice(pipe_.read_end.get(), nullptr, dst_.fd.get(), nullptr, left,
                    SPLICE_F_MOVE | SPLICE_F_NONBLOCK | (eof_ ? SPLICE_F_MORE : 0u));
  });
  if (moved != PumpStatus::Done) return moved;
  if (pipe_) pool_->release(std::move(pipe_), true);
  return PumpStatus::Done;
}

// At the urgent mark (reads stop short of it), reads the urgent byte alone, to be sent out of
// band in its place in the stream: Done when it was taken, Waiting when the mark is not next
// (ordinary bytes come first), Failed on a read error.
PumpStatus Direction::take_urgent(std::atomic<uint64_t>* counter, bool dump) {
  int at_mark = 0;
  if (::ioctl(src_.fd.get(), SIOCATMARK, &at_mark) != 0 || !at_mark) return PumpStatus::Waiting;
  const ssize_t n = ::recv(src_.fd.get(), &urgent_byte_, 1, 0);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? PumpStatus::Waiting : fail(errno, true);
  if (n == 0) return PumpStatus::Waiting;  // the end of stream: the next read takes it
  if (dump) log::dump(dump_as_, &urgent_byte_, 1);
  count(1, counter);
  have_urgent_ = true;
  src_.urgent = false;
  return PumpStatus::Done;
}

Direction::~Direction() {
  if (pipe_) pool_->release(std::move(pipe_), in_pipe_ == 0);
}

PumpStatus Direction::pump(RelayBuffers& buffers, std::atomic<uint64_t>* counter, bool dump, bool last) {
  for (;;) {
    const PumpStatus flushed = flush();
    if (flushed != PumpStatus::Done) return flushed;
    if (eof_) {
      if (!shut_ && !last) ::shutdown(dst_.fd.get(), SHUT_WR);
      shut_ = true;
      return PumpStatus::Done;
    }
    // Urgent data first: a lone urgent byte is announced by EPOLLPRI only, not as readable.
    if (src_.urgent) {
      const PumpStatus urgent = take_urgent(counter, dump);
      if (urgent == PumpStatus::Failed) return urgent;
      if (urgent == PumpStatus::Done) continue;  // flush() sends it after what came before it
    }
    if (!src_.readable) return PumpStatus::Waiting;
    const bool splice = splicing_ && !dump;
    const PumpStatus read = splice ? read_splice(buffers, counter) : read_copy(buffers, counter, dump);
    if (read != PumpStatus::Done) return read;
  }
}

// MSG_MORE once the source has ended: the last bytes wait in the send queue for the FIN that
// the shutdown() or close() right after adds to them, so they leave as one segment.
int Direction::send_flags() const { return MSG_NOSIGNAL | (eof_ ? MSG_MORE : 0); }

void Direction::count(size_t len, std::atomic<uint64_t>* counter) {
  moved_ = true;
  bytes_ += len;
  if (counter) counter->fetch_add(len, std::memory_order_relaxed);
}

// Reads into the scratch buffer and writes on at once; keeps what the destination did not take.
PumpStatus Direction::read_copy(RelayBuffers& buffers, std::atomic<uint64_t>* counter, bool dump) {
  unsigned char* data = buffers.data.get();
  const ssize_t n = ::recv(src_.fd.get(), data, RelayBuffers::kSize, 0);
  if (n < 0) {
    if (errno == EINTR) return PumpStatus::Done;
    if (errno == EAGAIN) {
      src_.readable = false;
      src_.urgent = false;  // a read does not stop at the mark with nothing before it: it is behind
      return PumpStatus::Waiting;
    }
    return fail(errno, true);
  }
  const size_t len = static_cast<size_t>(n);
  if (dump) log::dump(dump_as_, data, len);
  if (len == 0) {
    eof_ = true;
    return PumpStatus::Done;
  }
  count(len, counter);
  // A short read drained the socket. After the peer's FIN, the end of stream is all that is
  // left: take it now, without the read that would return 0, and send these bytes with the FIN
  // (send_flags() holds them for the shutdown or close that follows). Otherwise skip the read
  // that would only say EAGAIN, unless an end of stream or urgent byte may be waiting behind it
  // (no new edge would announce it). A full read means the peer streams: splice from now on.
  if (len < RelayBuffers::kSize && src_.only_fin_left()) {
    eof_ = true;
    if (dump) log::dump(dump_as_, data, 0);  // as the read that returns 0 would have
  } else if (len < RelayBuffers::kSize && !src_.hangup && !src_.urgent) {
    src_.readable = false;
  }
  if (len == RelayBuffers::kSize) splicing_ = true;

  ssize_t sent = 0;
  if (dst_.writable) {
    sent = ::send(dst_.fd.get(), data, len, send_flags());
    if (sent < 0) {
      if (errno != EAGAIN && errno != EINTR) return fail(errno, false);
      sent = 0;
    }
    wrote_ = wrote_ || sent > 0;
  }
  if (static_cast<size_t>(sent) < len) {
    dst_.writable = false;
    pending_.reset(new unsigned char[len - static_cast<size_t>(sent)]);
    std::memcpy(pending_.get(), data + sent, len - static_cast<size_t>(sent));
    pending_len_ = len - static_cast<size_t>(sent);
  }
  return PumpStatus::Done;
}

// Moves what the source has into a pipe (flush() then moves it on to the destination).
PumpStatus Direction::read_splice(RelayBuffers& buffers, std::atomic<uint64_t>* counter) {
  if (!pipe_) {
    pipe_ = buffers.pipes.acquire();
    pool_ = &buffers.pipes;
    if (!pipe_) {  // no descriptor for a pipe: copy instead
      splicing_ = false;
      return PumpStatus::Done;
    }
  }
  const ssize_t n = ::splice(src_.fd.get(), nullptr, pipe_.write_end.get(), nullptr, PipePool::kCapacity,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0) {
    if (errno == EINTR) return PumpStatus::Done;
    // EAGAIN: nothing to read (the pipe is empty here), or an urgent mark not yet announced is
    // next (splice() stops there; its EPOLLPRI is on its way). An announced one was taken first.
    if (errno == EAGAIN) {
      src_.readable = false;
      src_.urgent = false;
      pool_->release(std::move(pipe_), true);
      return PumpStatus::Waiting;
    }
    return fail(errno, true);
  }
  if (n == 0) {
    eof_ = true;
    return PumpStatus::Done;
  }
  const size_t len = static_cast<size_t>(n);
  count(len, counter);
  in_pipe_ = len;
  // A short splice does not mean the socket is drained: the pipe has one buffer per piece of
  // socket data, so small pieces fill it early. Only EAGAIN says so (the next round).
  return PumpStatus::Done;
}

void Direction::queue_first(const std::string& bytes) {
  pending_.reset(new unsigned char[bytes.size()]);
  std::memcpy(pending_.get(), bytes.data(), bytes.size());
  pending_off_ = 0;
  pending_len_ = bytes.size();
}

bool Direction::moved_since_last_check() {
  const bool m = moved_;
  moved_ = false;
  return m;
}

}  // namespace balance::net
