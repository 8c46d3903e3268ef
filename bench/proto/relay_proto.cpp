// relay_proto: an experiment, not a product. One minimal TCP relay, the same relay logic over
// several ways of doing its I/O: epoll readiness plus one syscall per operation (balance's design,
// the default), or io_uring completions with every operation of a loop turn submitted by one
// io_uring_enter, for everything (--uring; --multishot with multishot recv into provided buffers)
// or only for connect and the bytes (--hybrid; --sync-send), or epoll readiness with reads as
// syscalls and only the sends of a loop turn going in by one io_uring_enter (--ring-send: reads stay
// readiness-driven, as urgent data needs). Running two modes against each other
// with bench/run says what io_uring would change for balance's data path; running the epoll mode
// against balance says whether the prototype is representative. See docs/PERFORMANCE.md.
//
// No splice, no timeouts, no control plane, round robin over the backends, 16 KiB per direction:
// meant for the connection-rate and keep-alive workloads only.
//
// usage: relay_proto [--uring | --multishot | --hybrid | --sync-send | --ring-send] [-f] [--threads N] [-b ADDR] PORT HOST:PORT...
//        (balance's argument form, so bench/run can start it as "balance-b")

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "provided_buffers.h"

namespace {

struct Options {
  bool uring = false;
  bool multishot = false;  // io_uring: one multishot recv per socket into a provided-buffer ring
  bool hybrid = false;     // io_uring --multishot for the bytes; accept, shutdown, close as syscalls
  bool sync_send = false;  // --hybrid, and what arrives is sent at once by send() (the ring only
                           // when the socket is full)
  bool ring_send = false;  // epoll and recv() as syscalls; the sends of a loop turn through one ring
                           // submission (MSG_DONTWAIT: each completes at once, EAGAIN included)
  int threads = 2;
  std::string bind = "0.0.0.0";
  uint16_t port = 0;
  std::vector<sockaddr_in> backends;
};

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

[[noreturn]] void usage_error(std::string_view what, std::string_view arg) {
  std::fprintf(stderr, "relay_proto: %.*s: %.*s\n", int(what.size()), what.data(), int(arg.size()), arg.data());
  std::exit(2);
}

uint16_t parse_port(std::string_view s) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v == 0 || v > 65535) usage_error("bad port", s);
  return static_cast<uint16_t>(v);
}

sockaddr_in parse_addr(std::string_view host, std::string_view port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(parse_port(port));
  if (inet_pton(AF_INET, std::string(host).c_str(), &a.sin_addr) != 1) usage_error("bad IPv4 address", host);
  return a;
}

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string_view> pos;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--uring")
      o.uring = true;
    else if (a == "--multishot")
      o.uring = o.multishot = true;
    else if (a == "--hybrid")
      o.uring = o.multishot = o.hybrid = true;
    else if (a == "--sync-send")
      o.uring = o.multishot = o.hybrid = o.sync_send = true;
    else if (a == "--ring-send")
      o.ring_send = true;
    else if (a == "-f")
      continue;
    else if (a == "--threads" && i + 1 < argc)
      o.threads = std::atoi(argv[++i]);
    else if (a == "-b" && i + 1 < argc)
      o.bind = argv[++i];
    else
      pos.push_back(a);
  }
  if (pos.size() < 2 || o.threads < 1 || o.threads > 64) {
    std::fprintf(stderr,
                 "usage: relay_proto [--uring | --multishot | --hybrid | --sync-send | --ring-send] [--threads N] [-b ADDR] PORT "
                 "HOST:PORT...\n");
    std::exit(2);
  }
  o.port = parse_port(pos[0]);
  for (size_t i = 1; i < pos.size(); ++i) {
    auto colon = pos[i].rfind(':');
    if (colon == std::string_view::npos) usage_error("backend is not HOST:PORT", pos[i]);
    o.backends.push_back(parse_addr(pos[i].substr(0, colon), pos[i].substr(colon + 1)));
  }
  return o;
}

// The listeners, for the SIGTERM handler. An io_uring's pending multishot accept holds its
// listener open for a moment after the process has exited (the ring is torn down by a kernel
// worker); a successor on the same SO_REUSEPORT port would get some connections queued to that
// dying listener and reset. Shutting the listeners down in the handler ends them at once.
std::atomic<int> g_listeners[64];
std::atomic<int> g_nlisteners{0};

extern "C" void on_term(int) {
  for (int i = 0, n = g_nlisteners.load(); i < n; ++i)
    if (int fd = g_listeners[i].load(); fd > 0) shutdown(fd, SHUT_RDWR);
  _exit(0);
}

int make_listener(const Options& o) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // inherited by accepted sockets
  sockaddr_in a = parse_addr(o.bind, std::to_string(o.port));  // (a valid port by now)
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) die("bind");
  if (listen(fd, 4096) < 0) die("listen");
  g_listeners[g_nlisteners.fetch_add(1)].store(fd);  // at most 64 threads
  return fd;
}

int make_backend_socket(int extra_flags) {
  int fd = socket(AF_INET, SOCK_STREAM | extra_flags, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// A free submission entry; when the queue is full, what is in it is submitted first.
io_uring_sqe* next_sqe(io_uring& ring) {
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  if (!s) {
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

// One direction of a connection: bytes read from fd[d], written to fd[1 - d].
struct Dir {
  uint32_t off = 0, len = 0;
  bool eof = false;      // the read side has ended
  bool done = false;     // ended and everything forwarded (the write side was shut down)
  bool stalled = false;  // epoll only: bytes wait for the write side to become writable
  bool hup = false;      // epoll only: the source's FIN or error was reported (edge-triggered:
                         // not again), so a short read does not mean drained
  bool queued = false;   // --ring-send: buf[off, off + len) is in a send submission
  bool drained = false;  // --ring-send: the last read was short, so no read until the next event
  char buf[16384];
  // io_uring --multishot only: received pieces (provided buffers) not yet sent, oldest first
  struct Piece {
    uint16_t bid;
    uint32_t off, len;
  };
  std::deque<Piece> queue;
  bool sending = false;
};

// Side 0 is the client, side 1 the backend; dir[0] is client -> backend.
struct Conn {
  int fd[2] = {-1, -1};
  bool connected = false;
  bool dead = false;
  int inflight = 0;  // io_uring only: submissions whose completion has not been seen
  Dir dir[2];
};

// ---- epoll: readiness, edge-triggered, one syscall per operation --------------------------------

class EpollWorker {
 public:
  explicit EpollWorker(const Options& o) : o_(o) {}

  void run() {
    lfd_ = make_listener(o_);
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (o_.ring_send) {
      io_uring_params p{};
      p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
      if (int r = io_uring_queue_init_params(4096, &ring_, &p); r < 0) {
        errno = -r;
        die("io_uring_queue_init_params");
      }
    }
    epoll_event ev{EPOLLIN, {.ptr = nullptr}};
    epoll_ctl(ep_, EPOLL_CTL_ADD, lfd_, &ev);
    epoll_event evs[256];
    std::vector<Conn*> graveyard;
    for (;;) {
      int n = epoll_wait(ep_, evs, 256, -1);
      for (int i = 0; i < n; ++i) {
        auto tag = reinterpret_cast<uintptr_t>(evs[i].data.ptr);
        if (tag == 0) {
          accept_all();
          continue;
        }
        auto* c = reinterpret_cast<Conn*>(tag & ~uintptr_t{1});
        if (!c->dead) on_event(c, int(tag & 1), evs[i].events, graveyard);
      }
      if (o_.ring_send) submit_sends(graveyard);
      for (Conn* c : graveyard) delete c;  // after the batch: later events may name them
      graveyard.clear();
    }
  }

 private:
  void accept_all() {
    for (;;) {
      int cfd = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) return;
      int bfd = make_backend_socket(SOCK_NONBLOCK | SOCK_CLOEXEC);
      const sockaddr_in& b = o_.backends[next_++ % o_.backends.size()];
      if (bfd < 0 || (connect(bfd, reinterpret_cast<const sockaddr*>(&b), sizeof b) < 0 && errno != EINPROGRESS)) {
        close(cfd);
        if (bfd >= 0) close(bfd);
        continue;
      }
      auto* c = new Conn;
      c->fd[0] = cfd;
      c->fd[1] = bfd;
      for (int s = 0; s < 2; ++s) {
        epoll_event ev{EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                       {.ptr = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(c) | uintptr_t(s))}};
        epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd[s], &ev);
      }
    }
  }

  void on_event(Conn* c, int side, uint32_t events, std::vector<Conn*>& graveyard) {
    if (side == 1 && !c->connected) {
      if (events & EPOLLERR) return kill(c, graveyard);
      if (!(events & EPOLLOUT)) return;
      c->connected = true;
      c->dir[0].stalled = c->dir[0].len != 0 || c->dir[0].eof;  // sent meanwhile
    }
    if (events & EPOLLOUT) {  // fd[side] writable: resume the direction that writes to it
      Dir& w = c->dir[1 - side];
      if (w.stalled) {
        w.stalled = false;
        if (!flush(c, 1 - side, graveyard)) return;
        if (!w.len && !w.eof && !pump(c, 1 - side, graveyard)) return;
      }
    }
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->dir[side].hup = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      c->dir[side].drained = false;
      pump(c, side, graveyard);
    }
  }

  // Reads fd[d] and forwards; a short read means drained, unless the FIN is in as well.
  bool pump(Conn* c, int d, std::vector<Conn*>& graveyard) {
    Dir& dir = c->dir[d];
    while (!dir.eof && dir.len == 0) {
      ssize_t n = recv(c->fd[d], dir.buf, sizeof dir.buf, 0);
      if (n > 0) {
        dir.off = 0;
        dir.len = uint32_t(n);
        dir.drained = size_t(n) < sizeof dir.buf && !dir.hup;
        if (!flush(c, d, graveyard)) return false;
        if (dir.drained) break;
      } else if (n == 0) {
        dir.eof = true;
      } else if (errno == EAGAIN) {
        break;
      } else {
        kill(c, graveyard);
        return false;
      }
    }
    if (dir.eof && dir.len == 0 && !dir.done) return finish(c, d, graveyard);
    return true;
  }

  bool flush(Conn* c, int d, std::vector<Conn*>& graveyard) {
    Dir& dir = c->dir[d];
    if (d == 0 && !c->connected) return true;
    if (o_.ring_send && dir.len) {
      if (!dir.queued) queue_send(c, d);
      return true;  // sent() goes on once the submission has completed
    }
    while (dir.len) {
      ssize_t n = send(c->fd[1 - d], dir.buf + dir.off, dir.len, MSG_NOSIGNAL);
      if (n > 0) {
        dir.off += uint32_t(n);
        dir.len -= uint32_t(n);
      } else if (n < 0 && errno == EAGAIN) {
        dir.stalled = true;  // resumed by EPOLLOUT on fd[1 - d]
        return true;
      } else {
        kill(c, graveyard);
        return false;
      }
    }
    if (dir.eof && !dir.done) return finish(c, d, graveyard);
    return true;
  }

  bool finish(Conn* c, int d, std::vector<Conn*>& graveyard) {
    if (d == 0 && !c->connected) return true;  // the connect's EPOLLOUT comes back here
    c->dir[d].done = true;
    if (c->dir[1 - d].done) {
      kill(c, graveyard);
      return false;
    }
    shutdown(c->fd[1 - d], SHUT_WR);
    return true;
  }

  // --ring-send: the send goes into the submission queue, which submit_sends() submits once the
  // batch of events has been handled (or kill() does, before it closes the descriptor).
  void queue_send(Conn* c, int d) {
    io_uring_sqe* s = next_sqe(ring_);
    Dir& dir = c->dir[d];
    io_uring_prep_send(s, c->fd[1 - d], dir.buf + dir.off, dir.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(s, reinterpret_cast<uintptr_t>(c) | uintptr_t(d));
    dir.queued = true;
    ++queued_;
  }

  // Submits the queued sends with one io_uring_enter and handles their completions (MSG_DONTWAIT:
  // each completes during the submission, EAGAIN included); what they set off may queue more.
  void submit_sends(std::vector<Conn*>& graveyard) {
    for (int rounds = 0; queued_ > 0; ++rounds) {
      if (rounds == 1000) {
        std::fprintf(stderr, "relay_proto: ring sends did not complete\n");
        std::exit(1);
      }
      io_uring_submit_and_get_events(&ring_);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      done_.clear();
      io_uring_for_each_cqe(&ring_, head, cqe) {
        done_.push_back({cqe->user_data, cqe->res});
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
      queued_ -= int(seen);
      for (auto [data, res] : done_) sent(reinterpret_cast<Conn*>(data & ~uintptr_t{1}), int(data & 1), res, graveyard);
    }
  }

  void sent(Conn* c, int d, int res, std::vector<Conn*>& graveyard) {
    Dir& dir = c->dir[d];
    dir.queued = false;
    if (c->dead) return;
    if (res < 0 && res != -EAGAIN) return kill(c, graveyard);
    if (res > 0) {
      dir.off += uint32_t(res);
      dir.len -= uint32_t(res);
    }
    if (dir.len) {
      dir.stalled = true;  // the socket is full: resumed by EPOLLOUT on fd[1 - d]
      return;
    }
    if (dir.eof) {
      if (!dir.done) finish(c, d, graveyard);
      return;
    }
    if (!dir.drained) pump(c, d, graveyard);
  }

  void kill(Conn* c, std::vector<Conn*>& graveyard) {
    // A queued send names the descriptor: submit it before the number can be reused.
    if (o_.ring_send && (c->dir[0].queued || c->dir[1].queued)) io_uring_submit(&ring_);
    close(c->fd[0]);
    close(c->fd[1]);
    c->dead = true;
    graveyard.push_back(c);
  }

  const Options& o_;
  int lfd_ = -1, ep_ = -1;
  size_t next_ = 0;
  io_uring ring_{};  // --ring-send
  int queued_ = 0;   // sends submitted or to be submitted, not yet completed
  std::vector<std::pair<uint64_t, int>> done_;
};

// ---- io_uring: completions; every operation of a loop turn goes in by one io_uring_enter -------

class UringWorker {
 public:
  explicit UringWorker(const Options& o) : o_(o) {}

  void run() {
    lfd_ = make_listener(o_);
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = 65536;
    if (int r = io_uring_queue_init_params(8192, &ring_, &p); r < 0) {
      errno = -r;
      die("io_uring_queue_init_params");
    }
    if (o_.multishot) bufs_.emplace(ring_, kBufs, kBufSize);
    arm_accept();
    for (;;) {
      int r = io_uring_submit_and_wait(&ring_, 1);
      if (r < 0 && r != -EINTR) {
        errno = -r;
        die("io_uring_submit_and_wait");
      }
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        complete(cqe->user_data, cqe->res, cqe->flags);
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

 private:
  static constexpr unsigned kBufs = 1024, kBufSize = 16384;

  enum Op : uintptr_t { kRecv0, kRecv1, kSend0, kSend1, kConnect, kShutdown, kCancel };
  static constexpr uintptr_t kAccept = 1, kClose = 2;  // no connection attached

  io_uring_sqe* sqe() { return next_sqe(ring_); }
  void tag(io_uring_sqe* s, Conn* c, Op op) {
    ++c->inflight;
    io_uring_sqe_set_data64(s, reinterpret_cast<uintptr_t>(c) | op);
  }

  void arm_accept() {
    io_uring_sqe* s = sqe();
    if (o_.hybrid)
      io_uring_prep_poll_multishot(s, lfd_, POLLIN);  // then accept4() them all
    else
      io_uring_prep_multishot_accept(s, lfd_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, kAccept);
  }
  void arm_recv(Conn* c, int d) {
    io_uring_sqe* s = sqe();
    if (o_.multishot) {
      io_uring_prep_recv_multishot(s, c->fd[d], nullptr, 0, 0);
      s->flags |= IOSQE_BUFFER_SELECT;
      s->buf_group = 0;
      return tag(s, c, d == 0 ? kRecv0 : kRecv1);
    }
    io_uring_prep_recv(s, c->fd[d], c->dir[d].buf, sizeof c->dir[d].buf, 0);
    s->ioprio |= IORING_RECVSEND_POLL_FIRST;  // just drained: wait for readiness first
    tag(s, c, d == 0 ? kRecv0 : kRecv1);
  }
  void arm_send(Conn* c, int d) {
    io_uring_sqe* s = sqe();
    Dir& dir = c->dir[d];
    if (o_.multishot) {
      const Dir::Piece& p = dir.queue.front();
      io_uring_prep_send(s, c->fd[1 - d], bufs_->buf(p.bid) + p.off, p.len, MSG_NOSIGNAL);
      dir.sending = true;
    } else {
      io_uring_prep_send(s, c->fd[1 - d], dir.buf + dir.off, dir.len, MSG_NOSIGNAL);
    }
    tag(s, c, d == 0 ? kSend0 : kSend1);
  }

  void complete(uint64_t data, int res, unsigned flags) {
    if (data == kAccept) {
      if (!(flags & IORING_CQE_F_MORE)) arm_accept();
      if (!o_.hybrid) {
        if (res >= 0) start(res);
        return;
      }
      for (int cfd; (cfd = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) start(cfd);
      return;
    }
    if (data == kClose) return;
    auto* c = reinterpret_cast<Conn*>(data & ~uintptr_t{7});
    auto op = Op(data & 7);
    if (!(flags & IORING_CQE_F_MORE)) --c->inflight;  // a multishot recv stays armed
    if (c->dead) {
      if (flags & IORING_CQE_F_BUFFER) bufs_->give_back(ProvidedBuffers::id(flags));
      if (c->inflight == 0) release(c);
      return;
    }
    if (o_.multishot && (op == kRecv0 || op == kRecv1 || op == kSend0 || op == kSend1))
      return complete_multishot(c, op, res, flags);
    switch (op) {
      case kRecv0:
      case kRecv1: {
        int d = op == kRecv0 ? 0 : 1;
        if (res > 0) {
          c->dir[d].off = 0;
          c->dir[d].len = uint32_t(res);
          if (d == 1 || c->connected) arm_send(c, d);
        } else if (res == 0) {
          c->dir[d].eof = true;
          finish(c, d);
        } else {
          kill(c);
        }
        break;
      }
      case kSend0:
      case kSend1: {
        int d = op == kSend0 ? 0 : 1;
        Dir& dir = c->dir[d];
        if (res <= 0) return kill(c);
        dir.off += uint32_t(res);
        dir.len -= uint32_t(res);
        if (dir.len)
          arm_send(c, d);
        else
          arm_recv(c, d);
        break;
      }
      case kConnect:
        if (res < 0) return kill(c);
        c->connected = true;
        arm_recv(c, 1);  // first: finish() below may end the connection
        if (o_.multishot ? !c->dir[0].queue.empty() : c->dir[0].len != 0)
          arm_send(c, 0);
        else if (c->dir[0].eof)
          finish(c, 0);
        break;
      case kShutdown:
      case kCancel:
        break;
    }
  }

  void complete_multishot(Conn* c, Op op, int res, unsigned flags) {
    int d = (op == kRecv0 || op == kSend0) ? 0 : 1;
    Dir& dir = c->dir[d];
    if (op == kRecv0 || op == kRecv1) {
      if (res > 0) {
        auto bid = ProvidedBuffers::id(flags);
        uint32_t off = 0;
        if (o_.sync_send && dir.queue.empty() && (d == 1 || c->connected)) {
          ssize_t n = send(c->fd[1 - d], bufs_->buf(bid), size_t(res), MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n < 0 && errno != EAGAIN) return kill(c);
          off = n > 0 ? uint32_t(n) : 0;
        }
        if (off == uint32_t(res)) {
          bufs_->give_back(bid);
          if (!(flags & IORING_CQE_F_MORE)) arm_recv(c, d);
          return;
        }
        dir.queue.push_back({bid, off, uint32_t(res) - off});
        if (!dir.sending && (d == 1 || c->connected)) arm_send(c, d);
        if (!(flags & IORING_CQE_F_MORE)) arm_recv(c, d);
      } else if (res == 0) {
        dir.eof = true;
        if (dir.queue.empty()) finish(c, d);
      } else if (res == -ENOBUFS) {
        arm_recv(c, d);  // the ring ran dry; an experiment may spin here
      } else {
        kill(c);
      }
      return;
    }
    dir.sending = false;
    if (res <= 0) return kill(c);
    Dir::Piece& p = dir.queue.front();
    p.off += uint32_t(res);
    p.len -= uint32_t(res);
    if (p.len == 0) {
      bufs_->give_back(p.bid);
      dir.queue.pop_front();
    }
    if (!dir.queue.empty())
      arm_send(c, d);
    else if (dir.eof)
      finish(c, d);
  }

  void start(int cfd) {
    int bfd = make_backend_socket(SOCK_CLOEXEC);
    if (bfd < 0) {
      close(cfd);
      return;
    }
    auto* c = new Conn;
    c->fd[0] = cfd;
    c->fd[1] = bfd;
    const sockaddr_in& b = o_.backends[next_++ % o_.backends.size()];
    io_uring_sqe* s = sqe();
    io_uring_prep_connect(s, bfd, reinterpret_cast<const sockaddr*>(&b), sizeof b);
    tag(s, c, kConnect);
    arm_recv(c, 0);
  }

  void finish(Conn* c, int d) {
    if (d == 0 && !c->connected) return;  // the connect completion comes back here
    c->dir[d].done = true;
    if (c->dir[1 - d].done) return kill(c);
    if (o_.hybrid) {
      shutdown(c->fd[1 - d], SHUT_WR);
      return;
    }
    io_uring_sqe* s = sqe();
    io_uring_prep_shutdown(s, c->fd[1 - d], SHUT_WR);
    tag(s, c, kShutdown);
  }

  // Ends the connection: pending operations are cancelled, the memory goes with the last one.
  void kill(Conn* c) {
    c->dead = true;
    if (c->inflight == 0) return release(c);
    for (int fd : c->fd) {
      io_uring_sqe* s = sqe();
      io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
      tag(s, c, kCancel);
    }
  }

  void release(Conn* c) {
    for (Dir& dir : c->dir)
      for (const Dir::Piece& p : dir.queue) bufs_->give_back(p.bid);
    for (int fd : c->fd) {
      if (o_.hybrid) {
        close(fd);
        continue;
      }
      io_uring_sqe* s = sqe();
      io_uring_prep_close(s, fd);
      io_uring_sqe_set_data64(s, kClose);
    }
    delete c;
  }

  const Options& o_;
  int lfd_ = -1;
  io_uring ring_{};
  std::optional<ProvidedBuffers> bufs_;  // --multishot
  size_t next_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, on_term);
  std::signal(SIGINT, on_term);
  std::vector<std::thread> workers;
  for (int i = 0; i < o.threads; ++i)
    workers.emplace_back([&o] {
      if (o.uring)
        UringWorker(o).run();
      else
        EpollWorker(o).run();
    });
  for (auto& w : workers) w.join();
}
