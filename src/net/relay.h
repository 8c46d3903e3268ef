// Moving the bytes of one direction of a proxied connection, from a source socket to a
// destination socket: non-blocking, edge-triggered, with back-pressure, half-close and urgent
// (out-of-band) data forwarded as urgent data.
//
// Memory: data is read into the worker's scratch buffer and written on at once; only what the
// destination does not take is copied into a buffer of the direction's own, and while that
// buffer is not empty the source is not read (back-pressure). So an idle connection holds no
// buffer, and a slow peer costs at most one scratch-buffer's worth per direction.
//
// Urgent data: both sockets have SO_OOBINLINE, so an urgent byte stays in its place in the
// stream. A read stops short of it, SIOCATMARK then says the next byte is urgent, and that byte,
// read alone, goes out with MSG_OOB. (Out of band, the kernel would drop an urgent byte not yet
// taken when the next urgent pointer arrives while the reader is at its mark; inline, it is
// kept, and forwarded as ordinary data once a later urgent pointer has superseded it, which is
// what a peer reading with SO_OOBINLINE sees of it anyway.)
//
// Streaming: once a read fills the whole scratch buffer, the direction switches to splice():
// bytes go socket -> pipe -> socket inside the kernel, through a pipe taken from the worker's
// pool only while bytes are in flight (at most a pipe's capacity, references to the socket's
// pages rather than copies). Not with -p (the dump needs the bytes), and not when no
// pipe can be had (out of descriptors: copying goes on).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "log/dump.h"
#include "net/fd.h"
#include "net/pipe_pool.h"

namespace balance::net {

// One socket of a proxied connection and what epoll last told us about it (edge-triggered:
// a flag stays set until a syscall says EAGAIN).
struct Side {
  Fd fd;
  // Readable only once epoll says so (it reports the current state when a socket is added): a
  // speculative read could start at an urgent mark not yet announced and take the urgent byte
  // as an ordinary one.
  bool readable = false;
  bool writable = true;
  bool hangup = false;  // EPOLLRDHUP/HUP/ERR seen: read on to the end, a short read is not "empty"
  bool urgent = false;  // EPOLLPRI seen: an urgent byte may be ahead in the stream
  bool fin = false;     // EPOLLRDHUP seen: the peer's FIN is in, behind whatever data is queued
  bool error = false;   // EPOLLERR seen: a reset or error must be read, not assumed away

  // After a short read, all that is left is the end of stream: the peer's FIN arrived, and no
  // urgent byte (where reads stop short) or error (which the next read reports) is in the way.
  bool only_fin_left() const { return fin && !urgent && !error; }

  // Folds epoll events into the flags.
  void note(uint32_t events);
};

// What the directions of one worker share: the scratch buffer and the pipe pool.
struct RelayBuffers {
  static constexpr size_t kSize = 64 * 1024;
  std::unique_ptr<unsigned char[]> data{new unsigned char[kSize]};
  PipePool pipes;
};

enum class PumpStatus {
  Waiting,  // nothing more to do until the next event
  Done,     // the source ended and the end was forwarded (shutdown of the destination's write side)
  Failed,   // a socket error (errno in Direction::error): the connection must be aborted
};

class Direction {
 public:
  Direction(Side& src, Side& dst, log::Direction dump_as) : src_(src), dst_(dst), dump_as_(dump_as) {}
  ~Direction();
  Direction(const Direction&) = delete;
  Direction& operator=(const Direction&) = delete;

  // Moves as much as the sockets allow. `counter` gets the bytes read; `dump` writes the -p dump.
  // `last`: the other direction is done, so the connection closes as soon as this one ends and
  // the end needs no shutdown() of its own (the close sends the FIN).
  PumpStatus pump(RelayBuffers& buffers, std::atomic<uint64_t>* counter, bool dump, bool last = false);

  // Queues bytes of our own to go out before anything read from the source (the PROXY header).
  // Only before the first pump.
  void queue_first(const std::string& bytes);

  bool done() const { return shut_; }
  // The source ended its stream (its end may still be on its way to the destination).
  bool source_ended() const { return eof_; }
  // Failed() came from the source side (a read), not the destination (a write).
  bool failed_at_source() const { return failed_at_source_; }
  uint64_t bytes() const { return bytes_; }
  bool moved_since_last_check();  // bytes read or written since the last call (the idle timeout)
  // Some bytes of ours or the source's went out to the destination.
  bool wrote_any() const { return wrote_; }
  int error() const { return error_; }
  size_t buffered() const { return pending_len_ + in_pipe_; }
  bool splicing() const { return splicing_; }

 private:
  PumpStatus flush();
  template <typename Write>
  PumpStatus write_out(size_t& left, Write write);
  PumpStatus flush_pipe();
  // One read from the source (copying or splicing); Waiting/Failed to stop, Done to go on.
  PumpStatus read_copy(RelayBuffers& buffers, std::atomic<uint64_t>* counter, bool dump);
  PumpStatus read_splice(RelayBuffers& buffers, std::atomic<uint64_t>* counter);
  void count(size_t len, std::atomic<uint64_t>* counter);
  int send_flags() const;
  PumpStatus take_urgent(std::atomic<uint64_t>* counter, bool dump);
  PumpStatus fail(int err, bool at_source);

  Side& src_;
  Side& dst_;
  log::Direction dump_as_;
  std::unique_ptr<unsigned char[]> pending_;  // allocated only while the destination lags
  size_t pending_off_ = 0;
  size_t pending_len_ = 0;
  bool splicing_ = false;
  Pipe pipe_;                  // held only while bytes are in it
  PipePool* pool_ = nullptr;   // where pipe_ came from
  size_t in_pipe_ = 0;
  bool have_urgent_ = false;  // an urgent byte read from src waits to be sent
  unsigned char urgent_byte_ = 0;
  bool eof_ = false;   // src ended
  bool shut_ = false;  // ...and dst's write side was shut down
  bool moved_ = false;
  bool wrote_ = false;
  bool failed_at_source_ = false;
  int error_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace balance::net
