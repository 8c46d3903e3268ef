// urgent_probe: an experiment for docs/PERFORMANCE.md. Can an io_uring data path forward TCP urgent
// data as urgent data, as balance's contract (COMPAT.md) requires? A loopback connection sends
// "abc", an urgent "X", then "def" and its FIN; the receiver has a multishot recv (provided
// buffers) and a multishot POLLPRI poll armed on its socket, with and without SO_OOBINLINE.
//
// Printed for each send pattern: how often each sequence of completions was seen. [..] is a recv
// completion (<mark> when SIOCATMARK said "at the urgent mark" as it was handled), {PRI} the
// poll, {oob=X} a recv(MSG_OOB) made on {PRI} that got the byte, [EOF] the end of stream. A run
// that sees no end of stream within 2 s stops there.
//
// usage: urgent_probe [RUNS_OF_THE_BURST_PATTERN]   (default 300; the paced patterns run 20 times)

#include <liburing.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "provided_buffers.h"

namespace {

constexpr unsigned kBufs = 64, kBufSize = 4096;
constexpr uint64_t kRecv = 1, kPoll = 2;

struct Pattern {
  const char* name;
  useconds_t before_urgent, after_urgent;  // pauses of the sender
};

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

// A connected loopback pair: {sender, receiver}.
std::pair<int, int> loopback_pair() {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (l < 0 || bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(l, 1) < 0 ||
      getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) < 0)
    die("listener");
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) die("connect");
  int s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  if (s < 0) die("accept4");
  close(l);
  return {c, s};
}

class Receiver {
 public:
  explicit Receiver(int fd) : fd_(fd) {
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (int r = io_uring_queue_init_params(64, &ring_, &p); r < 0) {
      errno = -r;
      die("io_uring_queue_init_params");
    }
    bufs_.emplace(ring_, kBufs, kBufSize);
    arm_recv();
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    io_uring_prep_poll_multishot(s, fd_, POLLPRI);
    io_uring_sqe_set_data64(s, kPoll);
  }
  ~Receiver() { io_uring_queue_exit(&ring_); }

  // Handles completions until the end of stream (or 2 s without one); returns what it saw.
  std::string run(bool oob_inline) {
    std::string log;
    for (int idle = 0; idle < 20;) {
      __kernel_timespec ts{0, 100 * 1000 * 1000};
      io_uring_cqe* first = nullptr;
      if (io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr) == -ETIME) {
        ++idle;
        continue;
      }
      io_uring_cqe* cqe;
      unsigned head, seen = 0;
      bool ended = false;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (io_uring_cqe_get_data64(cqe) == kPoll) {
          log += "{PRI}";
          char b;
          if (!oob_inline && recv(fd_, &b, 1, MSG_OOB) == 1) log += std::string("{oob=") + b + "}";
          continue;
        }
        if (cqe->res > 0) {
          const uint16_t bid = ProvidedBuffers::id(cqe->flags);
          int mark = 0;
          ioctl(fd_, SIOCATMARK, &mark);
          log += "[" + std::string(bufs_->buf(bid), static_cast<size_t>(cqe->res)) + "]" + (mark ? "<mark>" : "");
          bufs_->give_back(bid);
        } else {
          log += cqe->res == 0 ? "[EOF]" : "[error " + std::to_string(-cqe->res) + "]";
          ended = true;
        }
        if (!ended && !(cqe->flags & IORING_CQE_F_MORE)) arm_recv();
      }
      io_uring_cq_advance(&ring_, seen);
      if (ended) return log;
    }
    return log + "[no EOF in 2 s]";
  }

 private:
  void arm_recv() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    io_uring_prep_recv_multishot(s, fd_, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    io_uring_sqe_set_data64(s, kRecv);
  }
  int fd_;
  io_uring ring_{};
  std::optional<ProvidedBuffers> bufs_;  // after ring_: unmapped once the ring is gone
};

std::string one_run(const Pattern& p, bool oob_inline) {
  const auto [sender_fd, receiver_fd] = loopback_pair();
  const int c = sender_fd, s = receiver_fd;  // (a lambda may not capture structured bindings in clang 14)
  int one = 1;
  if (oob_inline) setsockopt(s, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
  auto receiver = std::make_unique<Receiver>(s);
  std::thread sender([&] {
    send(c, "abc", 3, 0);
    if (p.before_urgent) usleep(p.before_urgent);
    send(c, "X", 1, MSG_OOB);
    if (p.after_urgent) usleep(p.after_urgent);
    send(c, "def", 3, 0);
    shutdown(c, SHUT_WR);
  });
  std::string log = receiver->run(oob_inline);
  sender.join();
  receiver.reset();
  close(c);
  close(s);
  return log;
}

}  // namespace

int main(int argc, char** argv) {
  const int burst_runs = argc > 1 ? std::atoi(argv[1]) : 300;
  const Pattern patterns[] = {
      {"abc, 20 ms, X, 20 ms, def", 20000, 20000}, {"abc, X, def at once", 0, 0}, {"abc, 20 ms, X and def", 20000, 0}};
  for (bool oob_inline : {true, false}) {
    for (const Pattern& p : patterns) {
      std::map<std::string, int> seen;
      const int runs = p.before_urgent || p.after_urgent ? 20 : burst_runs;
      for (int i = 0; i < runs; ++i) ++seen[one_run(p, oob_inline)];
      std::printf("SO_OOBINLINE %s, %s (%d runs):\n", oob_inline ? "on" : "off", p.name, runs);
      for (const auto& [sequence, count] : seen) std::printf("  %4d  %s\n", count, sequence.c_str());
    }
  }
}
