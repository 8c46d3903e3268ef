// One relay Direction between real loopback TCP sockets: bytes arrive intact and in order,
// memory stays bounded when the destination does not read, the end of stream is forwarded as
// a half-close, and urgent data stays urgent and in its place.
#include "net/relay.h"
#include "net/sockets.h"
#include "net_test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace balance::net {
namespace {

// A connected pair of loopback TCP sockets, both non-blocking.
std::pair<Fd, Fd> tcp_pair() {
  sockaddr_in addr;
  Fd listener = listen_on_loopback(addr);
  Fd a(::socket(AF_INET, SOCK_STREAM, 0));
  EXPECT_EQ(::connect(a.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  Fd b(::accept(listener.get(), nullptr, nullptr));
  for (int fd : {a.get(), b.get()}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return {std::move(a), std::move(b)};
}

// Waits (bounded) until fd is readable or has an exceptional condition.
bool wait_readable(int fd, int timeout_ms = 2000) {
  pollfd p{fd, POLLIN | POLLPRI, 0};
  return ::poll(&p, 1, timeout_ms) > 0;
}

// Everything the peer has sent until it ends its stream (bounded).
std::string read_to_eof(int fd) {
  std::string out;
  char buf[4096];
  for (int rounds = 0; rounds < 10000; ++rounds) {
    if (!wait_readable(fd)) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return out;
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  ADD_FAILURE() << "no end of stream";
  return out;
}

// The reader is at the urgent mark: the urgent byte comes out of band, then `rest` and the end.
void expect_urgent_then(int reader, char byte, const std::string& rest) {
  int at_mark = 0;
  ASSERT_EQ(::ioctl(reader, SIOCATMARK, &at_mark), 0);
  EXPECT_EQ(at_mark, 1);
  char urgent = 0;
  ASSERT_EQ(::recv(reader, &urgent, 1, MSG_OOB), 1);
  EXPECT_EQ(urgent, byte);
  EXPECT_EQ(read_to_eof(reader), rest);
}

struct Rig {
  // client -> [src | relay | dst] -> server
  std::pair<Fd, Fd> in = tcp_pair();   // in.first: the writing peer; in.second: relay's src
  std::pair<Fd, Fd> out = tcp_pair();  // out.first: relay's dst; out.second: the reading peer
  Side src, dst;
  RelayBuffers scratch;
  std::atomic<uint64_t> counter{0};
  Direction dir{src, dst, log::Direction::FromClient};

  Rig() {
    src.fd = std::move(in.second);
    dst.fd = std::move(out.first);
    for (int fd : {src.fd.get(), dst.fd.get()}) set_stream_options(fd);  // as balance's sockets have
  }
  int writer() const { return in.first.get(); }
  int reader() const { return out.second.get(); }
  // Pumps as an event loop would after a (possibly spurious) readiness event on both sockets.
  PumpStatus pump(uint32_t src_events = EPOLLIN, uint32_t dst_events = EPOLLOUT) {
    src.note(src_events);
    dst.note(dst_events);
    return dir.pump(scratch, &counter, false);
  }
};

// Ends the writer's stream, then pumps as the events of a socket with urgent data would, until
// the direction is done (bounded); false if it never is.
bool end_and_pump_until_done(Rig& rig) {
  ::shutdown(rig.writer(), SHUT_WR);
  for (int i = 0; i < 200 && !rig.dir.done(); ++i) {
    wait_readable(rig.src.fd.get(), 20);
    rig.pump(EPOLLIN | EPOLLPRI | EPOLLRDHUP);
  }
  return rig.dir.done();
}

// Bytes written by the peer come out at the other end unchanged, and are counted.
TEST(Relay, ForwardsBytesAndCounts) {
  Rig rig;
  const std::string msg = "hello through the relay";
  ASSERT_EQ(::send(rig.writer(), msg.data(), msg.size(), 0), static_cast<ssize_t>(msg.size()));
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  EXPECT_EQ(rig.pump(), PumpStatus::Waiting);
  ::shutdown(rig.writer(), SHUT_WR);
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  EXPECT_EQ(rig.pump(EPOLLIN | EPOLLRDHUP), PumpStatus::Done);
  EXPECT_EQ(read_to_eof(rig.reader()), msg);
  EXPECT_EQ(rig.counter.load(), msg.size());
}

// A destination that does not read makes the relay stop reading: what it holds stays below
// one scratch buffer, and the writer is pushed back (its send would block).
TEST(Relay, BackPressureBoundsMemory) {
  Rig rig;
  std::string chunk(64 * 1024, 'x');
  size_t written = 0;
  bool writer_blocked = false;
  for (int i = 0; i < 2000 && !writer_blocked; ++i) {
    const ssize_t n = ::send(rig.writer(), chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n < 0) {
      ASSERT_EQ(errno, EAGAIN);
      writer_blocked = true;
    } else {
      written += static_cast<size_t>(n);
    }
    rig.pump();
    EXPECT_LE(rig.dir.buffered(), RelayBuffers::kSize);
  }
  EXPECT_TRUE(writer_blocked) << "the relay kept reading although nobody drained it";
  EXPECT_GT(written, 0u);
  // Draining the reader lets everything through, byte for byte.
  ::shutdown(rig.writer(), SHUT_WR);
  size_t received = 0;
  char buf[65536];
  for (int i = 0; i < 100000 && received < written; ++i) {
    rig.pump(EPOLLIN | EPOLLRDHUP);
    const ssize_t n = ::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) received += static_cast<size_t>(n);
    else wait_readable(rig.reader(), 10);
  }
  EXPECT_EQ(received, written);
  EXPECT_EQ(rig.pump(EPOLLIN | EPOLLRDHUP), PumpStatus::Done);
  EXPECT_EQ(rig.dir.buffered(), 0u);
}

// The writer's end of stream becomes a half-close toward the reader, and the reader can still
// send the other way on the same socket.
TEST(Relay, EndOfStreamIsForwardedAsHalfClose) {
  Rig rig;
  ::shutdown(rig.writer(), SHUT_WR);
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  EXPECT_EQ(rig.pump(EPOLLIN | EPOLLRDHUP), PumpStatus::Done);
  EXPECT_TRUE(rig.dir.done());
  EXPECT_EQ(read_to_eof(rig.reader()), "");
  const char reply[] = "still open";
  EXPECT_EQ(::send(rig.reader(), reply, sizeof reply, 0), static_cast<ssize_t>(sizeof reply));
}

// When the peer's last bytes and its FIN are both in, the relay forwards them as one segment
// (the FIN rides on the data) and ends the direction without a read that returns 0.
TEST(Relay, LastBytesAndTheEndLeaveAsOneSegment) {
  Rig rig;
  const std::string msg = "the last words";
  ASSERT_EQ(::send(rig.writer(), msg.data(), msg.size(), 0), static_cast<ssize_t>(msg.size()));
  ::shutdown(rig.writer(), SHUT_WR);
  pollfd p{rig.src.fd.get(), POLLRDHUP, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  const uint32_t before = segments_sent(rig.dst.fd.get());
  EXPECT_EQ(rig.pump(EPOLLIN | EPOLLRDHUP), PumpStatus::Done);
  EXPECT_TRUE(rig.dir.done());
  EXPECT_EQ(segments_sent(rig.dst.fd.get()) - before, 1u);
  EXPECT_EQ(read_to_eof(rig.reader()), msg);
  // The end was taken from the FIN alone: the source still holds it, unread.
  char c;
  EXPECT_EQ(::recv(rig.src.fd.get(), &c, 1, MSG_DONTWAIT), 0);
}

// Without the peer's FIN, a short read ends nothing: the direction waits for more.
TEST(Relay, ShortReadWithoutFinEndsNothing) {
  Rig rig;
  ASSERT_EQ(::send(rig.writer(), "abc", 3, 0), 3);
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  EXPECT_EQ(rig.pump(), PumpStatus::Waiting);
  EXPECT_FALSE(rig.dir.done());
  char buf[8];
  ASSERT_TRUE(wait_readable(rig.reader()));
  EXPECT_EQ(::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT), 3);
}

// After an error event, a short read proves nothing: the error is read, not a clean end.
TEST(Relay, AnErrorIsReadNotTakenForTheEnd) {
  Rig rig;
  linger lg{1, 0};
  ::setsockopt(rig.in.first.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ASSERT_EQ(::send(rig.writer(), "x", 1, 0), 1);
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  rig.in.first.reset();  // close with RST
  pollfd p{rig.src.fd.get(), POLLRDHUP, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  PumpStatus s = PumpStatus::Waiting;
  for (int i = 0; i < 10 && s == PumpStatus::Waiting; ++i) s = rig.pump(EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP);
  EXPECT_EQ(s, PumpStatus::Failed);
  EXPECT_EQ(rig.dir.error(), ECONNRESET);
}

// Urgent data is sent on as urgent data, between the bytes around it.
TEST(Relay, UrgentDataStaysUrgentAndInPlace) {
  Rig rig;
  ASSERT_EQ(::send(rig.writer(), "ab", 2, 0), 2);
  ASSERT_EQ(::send(rig.writer(), "!", 1, MSG_OOB), 1);
  ASSERT_EQ(::send(rig.writer(), "cd", 2, 0), 2);
  ASSERT_TRUE(end_and_pump_until_done(rig));
  // The reader sees "ab", then the mark with the urgent byte, then "cd".
  std::string before;
  char buf[16];
  for (int i = 0; i < 100 && before.size() < 2; ++i) {
    wait_readable(rig.reader(), 20);
    const ssize_t n = ::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) before.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(before, "ab");
  expect_urgent_then(rig.reader(), '!', "cd");
}

// A lone urgent byte is announced by EPOLLPRI alone (the socket is not "readable"): it is
// forwarded at once, not left waiting for ordinary data to follow.
TEST(Relay, LoneUrgentByteIsForwardedOnPriAlone) {
  Rig rig;
  rig.src.readable = false;  // as after an earlier EAGAIN
  ASSERT_EQ(::send(rig.writer(), "!", 1, MSG_OOB), 1);
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  rig.dst.note(EPOLLOUT);
  rig.src.note(EPOLLPRI);
  ASSERT_FALSE(rig.src.readable);
  EXPECT_EQ(rig.dir.pump(rig.scratch, &rig.counter, false), PumpStatus::Waiting);
  ASSERT_TRUE(wait_readable(rig.reader()));
  char urgent = 0;
  ASSERT_EQ(::recv(rig.reader(), &urgent, 1, MSG_OOB), 1);
  EXPECT_EQ(urgent, '!');
}

// Everything a reader with SO_OOBINLINE gets until the end of stream, and the offsets in it
// where the urgent mark stood (reads stop short of the mark). Bounded.
std::pair<std::string, std::vector<size_t>> read_inline_with_marks(int fd) {
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
  std::string out;
  std::vector<size_t> marks;
  char buf[4096];
  for (int rounds = 0; rounds < 10000; ++rounds) {
    if (!wait_readable(fd)) break;
    int at_mark = 0;
    if (::ioctl(fd, SIOCATMARK, &at_mark) == 0 && at_mark && (marks.empty() || marks.back() != out.size())) {
      marks.push_back(out.size());
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return {out, marks};
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  ADD_FAILURE() << "no end of stream";
  return {out, marks};
}

// The relay sits at an urgent mark it was not told of yet when the next urgent byte arrives.
// Out of band, the kernel would drop the first urgent byte then; inline (SO_OOBINLINE), it stays
// in the stream, as an ordinary byte once the later mark supersedes it, and the later one is
// forwarded as urgent. No byte is lost or moved.
TEST(Relay, BackToBackUrgentBytesLoseNoByte) {
  Rig rig;
  ASSERT_EQ(::send(rig.writer(), "aaaa", 4, 0), 4);
  ASSERT_EQ(::send(rig.writer(), "X", 1, MSG_OOB), 1);
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  // EPOLLIN without the EPOLLPRI still on its way: the read stops at X's mark.
  EXPECT_EQ(rig.pump(EPOLLIN), PumpStatus::Waiting);
  int at_mark = 0;
  ASSERT_EQ(::ioctl(rig.src.fd.get(), SIOCATMARK, &at_mark), 0);
  ASSERT_EQ(at_mark, 1) << "the relay should stand at X's mark";
  ASSERT_EQ(::send(rig.writer(), "bbbb", 4, 0), 4);
  ASSERT_EQ(::send(rig.writer(), "Y", 1, MSG_OOB), 1);
  ASSERT_EQ(::send(rig.writer(), "cccc", 4, 0), 4);
  ASSERT_TRUE(end_and_pump_until_done(rig));
  const auto [stream, marks] = read_inline_with_marks(rig.reader());
  EXPECT_EQ(stream, "aaaaXbbbbYcccc");
  EXPECT_EQ(marks, std::vector<size_t>{9}) << "Y, and only Y, arrives urgent";
  EXPECT_EQ(rig.counter.load(), stream.size());
}

// While the destination takes bytes that waited for it, the direction is not idle, even when
// the source gives nothing new: the idle timeout must not cut a slow reader off.
TEST(Relay, ADestinationTakingWhatWaitedIsTraffic) {
  Rig rig;
  const std::string chunk(64 * 1024, 'x');
  for (int i = 0; i < 2000 && rig.dir.buffered() == 0; ++i) {
    ::send(rig.writer(), chunk.data(), chunk.size(), MSG_DONTWAIT);
    rig.pump();
  }
  ASSERT_GT(rig.dir.buffered(), 0u) << "the destination never filled up";
  rig.dir.moved_since_last_check();
  rig.src.readable = false;  // the source gives nothing new from here on
  char buf[65536];
  size_t drained = 0;
  for (int i = 0; i < 1000 && drained < 4 * sizeof buf; ++i) {
    const ssize_t n = ::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) drained += static_cast<size_t>(n);
    else wait_readable(rig.reader(), 10);
  }
  EXPECT_FALSE(rig.dir.moved_since_last_check());
  const size_t before = rig.dir.buffered();
  for (int i = 0; i < 100 && rig.dir.buffered() == before; ++i) {
    rig.pump(0, EPOLLOUT);
    if (rig.dir.buffered() == before) wait_readable(rig.reader(), 10);
  }
  ASSERT_LT(rig.dir.buffered(), before);
  EXPECT_TRUE(rig.dir.moved_since_last_check());
}

// Pushes `data` through the rig (pumping as events would), then ends the stream; returns what
// the reader got. Bounded.
std::string push_through(Rig& rig, const std::string& data) {
  size_t written = 0;
  std::string got;
  char buf[65536];
  for (int i = 0; i < 200000 && (written < data.size() || !rig.dir.done()); ++i) {
    if (written < data.size()) {
      const ssize_t n = ::send(rig.writer(), data.data() + written, data.size() - written, MSG_DONTWAIT);
      if (n > 0) written += static_cast<size_t>(n);
      if (written == data.size()) ::shutdown(rig.writer(), SHUT_WR);
    }
    rig.pump(EPOLLIN | (written == data.size() ? EPOLLRDHUP : 0u));
    const ssize_t r = ::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) got.append(buf, static_cast<size_t>(r));
  }
  got += read_to_eof(rig.reader());
  return got;
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 2654435761u) >> 13);
  return s;
}

// A stream that fills the scratch buffer switches the direction to splice(); every byte still
// arrives, in order, and is counted.
TEST(Relay, StreamingSwitchesToSpliceAndKeepsEveryByte) {
  Rig rig;
  const std::string data = pattern(8 << 20);
  EXPECT_EQ(push_through(rig, data), data);
  EXPECT_TRUE(rig.dir.splicing());
  EXPECT_EQ(rig.counter.load(), data.size());
  EXPECT_EQ(rig.dir.buffered(), 0u);
  EXPECT_EQ(rig.scratch.pipes.idle(), 1u);  // the pipe went back to the pool
}

// A pipe holds 16 buffers, one per piece of socket data: after many small writes a splice()
// can come back short with bytes still waiting. Those bytes must still be moved, with no end
// of stream and no new data to announce them.
TEST(Relay, ShortSpliceOfSmallPiecesLeavesNothingBehind) {
  Rig rig;
  const std::string first = pattern(RelayBuffers::kSize);
  ASSERT_EQ(::send(rig.writer(), first.data(), first.size(), 0), static_cast<ssize_t>(first.size()));
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  std::string got;
  char buf[65536];
  for (int i = 0; i < 100 && got.size() < first.size(); ++i) {
    rig.pump();
    const ssize_t r = ::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) got.append(buf, static_cast<size_t>(r));
    else wait_readable(rig.reader(), 10);
  }
  ASSERT_TRUE(rig.dir.splicing());
  // 400 pieces of 100 bytes, each its own segment (TCP_NODELAY), then silence.
  const int one = 1;
  ::setsockopt(rig.writer(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string piece = pattern(100);
  for (int i = 0; i < 400; ++i) ASSERT_EQ(::send(rig.writer(), piece.data(), piece.size(), 0), 100);
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  rig.pump();  // one readiness event, as edge-triggered epoll gives
  const size_t want = first.size() + 400 * piece.size();
  for (int i = 0; i < 200 && got.size() < want; ++i) {
    rig.pump(0, 0);  // no new event: only what the relay already knows
    const ssize_t r = ::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) got.append(buf, static_cast<size_t>(r));
    else wait_readable(rig.reader(), 10);
  }
  EXPECT_EQ(got.size(), want);
}

// Pipes come with the larger capacity (fewer splice() calls per byte); the system's default
// limits (fs.pipe-max-size is 1 MiB) allow it.
TEST(PipePool, PipesHaveTheLargerCapacity) {
  PipePool pool;
  Pipe p = pool.acquire();
  ASSERT_TRUE(p);
  EXPECT_EQ(::fcntl(p.write_end.get(), F_GETPIPE_SZ), PipePool::kCapacity);
}

// Small exchanges never splice (they gain nothing from a pipe).
TEST(Relay, SmallExchangesKeepCopying) {
  Rig rig;
  const std::string data = pattern(1000);
  EXPECT_EQ(push_through(rig, data), data);
  EXPECT_FALSE(rig.dir.splicing());
  EXPECT_EQ(rig.scratch.pipes.idle(), 0u);
}

// While splicing, a destination that does not read still stops the source: at most a pipe's
// worth is held.
TEST(Relay, SplicingKeepsBackPressure) {
  Rig rig;
  const std::string chunk = pattern(RelayBuffers::kSize);
  bool writer_blocked = false;
  for (int i = 0; i < 4000 && !writer_blocked; ++i) {
    if (::send(rig.writer(), chunk.data(), chunk.size(), MSG_DONTWAIT) < 0) writer_blocked = errno == EAGAIN;
    rig.pump();
    ASSERT_LE(rig.dir.buffered(), static_cast<size_t>(PipePool::kCapacity));
  }
  EXPECT_TRUE(rig.dir.splicing());
  EXPECT_TRUE(writer_blocked);
}

// Urgent data in the middle of a spliced stream is still sent out of band, in its place.
TEST(Relay, UrgentDataWhileSplicing) {
  Rig rig;
  const std::string head = pattern(1 << 20);
  size_t written = 0;
  std::string got;
  char buf[65536];
  for (int i = 0; i < 100000 && got.size() < head.size(); ++i) {
    if (written < head.size()) {
      const ssize_t n = ::send(rig.writer(), head.data() + written, head.size() - written, MSG_DONTWAIT);
      if (n > 0) written += static_cast<size_t>(n);
    }
    rig.pump();
    const ssize_t r = ::recv(rig.reader(), buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) got.append(buf, static_cast<size_t>(r));
  }
  ASSERT_EQ(got, head);
  ASSERT_TRUE(rig.dir.splicing());
  ASSERT_EQ(::send(rig.writer(), "!", 1, MSG_OOB), 1);
  ASSERT_EQ(::send(rig.writer(), "tail", 4, 0), 4);
  ASSERT_TRUE(end_and_pump_until_done(rig));
  ASSERT_TRUE(wait_readable(rig.reader()));
  expect_urgent_then(rig.reader(), '!', "tail");
}

// A reset from the source fails the direction with the error, for the session to abort.
TEST(Relay, ResetFailsTheDirection) {
  Rig rig;
  linger lg{1, 0};
  ::setsockopt(rig.in.first.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::send(rig.writer(), "x", 1, 0);
  rig.in.first.reset();  // close with RST
  ASSERT_TRUE(wait_readable(rig.src.fd.get()));
  PumpStatus s = PumpStatus::Waiting;
  for (int i = 0; i < 10 && s == PumpStatus::Waiting; ++i) s = rig.pump(EPOLLIN | EPOLLERR | EPOLLHUP);
  EXPECT_EQ(s, PumpStatus::Failed);
  EXPECT_EQ(rig.dir.error(), ECONNRESET);
}

}  // namespace
}  // namespace balance::net
