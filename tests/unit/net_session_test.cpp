// A real Worker (its event loop thread, acceptor and sessions) relaying between real loopback
// sockets, and the state of the socket it opened to the server afterwards.
#include "net/worker.h"
#include "net/session.h"
#include "net_test_util.h"

#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace balance::net {
namespace {

core::Endpoint endpoint_of(const sockaddr_in& addr) {
  return *core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
}

// One worker thread accepting on its own listener, with one channel: `backend`.
class OneWorker {
 public:
  // `before_start` runs once the listener is open, before the worker's loop starts.
  explicit OneWorker(const core::Endpoint& backend, const std::function<void(const sockaddr_in&)>& before_start = {}) {
    table_->init(::getpid(), 0, 0);
    table_->append_channel(0, backend, 0, true);
    listener_ = listen_on_loopback(address, SOCK_NONBLOCK, kBacklog);
    if (before_start) before_start(address);
    worker_ = std::make_unique<Worker>(shared_, 0, std::vector<int>{listener_.get()}, std::nullopt);
    EXPECT_EQ(worker_->start(), 0);
    worker_->go(true);
  }
  ~OneWorker() { worker_->stop_and_join(); }

  core::Table& table() { return *table_; }

  // Runs `task` on the worker's loop thread and waits until it has run.
  void on_loop(std::function<void(Worker&)> task) {
    std::promise<void> ran;
    worker_->loop().post([&] {
      task(*worker_);
      ran.set_value();
    });
    ran.get_future().wait();
  }

  static constexpr int kBacklog = 256;  // the listener's (and a test's backend's) accept queue
  sockaddr_in address{};                // where clients connect

 private:
  cli::Config config_;
  std::unique_ptr<core::Table> table_ = std::make_unique<core::Table>();
  WorkerShared shared_{config_, *table_, false};
  Fd listener_;
  std::unique_ptr<Worker> worker_;
};

// The descriptor of this process whose local address is `local` (the worker's socket).
std::optional<int> socket_bound_to(const sockaddr_in& local) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return std::nullopt;
  std::optional<int> found;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 && addr.sin_family == AF_INET &&
        addr.sin_port == local.sin_port && addr.sin_addr.s_addr == local.sin_addr.s_addr) {
      found = fd;
    }
  }
  ::closedir(dir);
  return found;
}

int quick_ack_mode(int fd) {
  int quick = -1;
  socklen_t len = sizeof quick;
  EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &quick, &len), 0) << std::strerror(errno);
  return quick;
}

// The handshake's last ACK to the server rides on the first bytes (TCP_QUICKACK off before
// connect), which leaves that socket delaying its ACKs. By the time the server's first reply is
// read it must be back in quick-ACK mode, as a plain connection is: otherwise a server answering
// in two small writes with Nagle on waits about 40 ms for the ACK of the first before it sends
// the second (through a plain connection it has it at once). (The kernel also leaves that mode
// by itself when its delayed-ACK timer strikes, 40 ms on: a machine stalled that long between
// the reply and the check would let this test pass without the fix, never fail with it.)
TEST(Session, ServerSocketQuickAcksOnceTheFirstReplyIsRead) {
  sockaddr_in backend_addr{};
  Fd backend = listen_on_loopback(backend_addr);
  OneWorker proxy(endpoint_of(backend_addr));

  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&proxy.address), sizeof proxy.address), 0)
      << std::strerror(errno);
  ASSERT_EQ(::send(client.get(), "ping\n", 5, MSG_NOSIGNAL), 5);

  ASSERT_TRUE(wait_for(backend.get(), POLLIN)) << "the worker never connected to the backend";
  Fd served(::accept(backend.get(), nullptr, nullptr));
  ASSERT_TRUE(served) << std::strerror(errno);
  char buf[8];
  ASSERT_TRUE(wait_for(served.get(), POLLIN));
  ASSERT_EQ(::recv(served.get(), buf, sizeof buf, 0), 5);

  sockaddr_in worker_side{};
  socklen_t len = sizeof worker_side;
  ASSERT_EQ(::getpeername(served.get(), reinterpret_cast<sockaddr*>(&worker_side), &len), 0);
  const std::optional<int> fd = socket_bound_to(worker_side);
  ASSERT_TRUE(fd) << "no socket of this process is the worker's end of the server connection";

  ASSERT_EQ(::send(served.get(), "pong\n", 5, MSG_NOSIGNAL), 5);
  ASSERT_TRUE(wait_for(client.get(), POLLIN));
  ASSERT_EQ(::recv(client.get(), buf, sizeof buf, 0), 5);
  EXPECT_EQ(std::string(buf, 5), "pong\n");
  // The worker switched the mode before it read the reply, so before the client could have it.
  EXPECT_EQ(quick_ack_mode(*fd), 1) << "the worker's socket to the server still delays its ACKs";
}

// Clients that queued up before the worker looked are all accepted, though they are more than
// one wake-up's batch (64) and the worker accepts only as many as the queue's length says: the
// listener is level-triggered, so what is left is reported again. Each accepted client costs a
// connect to the backend, which counts them.
// A client the loop cannot watch (epoll_ctl refuses it: out of memory, or at
// fs.epoll.max_user_watches) is closed without a channel: it counts as refused, as every
// accepted client that no channel took does, and no channel is tried or charged.
TEST(Session, AClientTheLoopCannotWatchCountsAsRefused) {
  sockaddr_in backend_address{};
  const Fd backend = listen_on_loopback(backend_address, SOCK_NONBLOCK, 1);
  OneWorker w(endpoint_of(backend_address));
  w.on_loop([](Worker& worker) {
    // epoll refuses /dev/null (EPERM) as it would refuse a socket when out of watches.
    auto session = std::make_unique<Session>(worker, Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                             *core::Endpoint::from_numeric("127.0.0.1", 40000));
    Session& s = *session;
    worker.adopt(std::move(session));
    s.start();
  });
  const core::Table& t = w.table();
  EXPECT_EQ(t.header.refused_total.load(), 1u);
  EXPECT_EQ(t.groups[0].channels[0].totalc.load(), 0u);
  EXPECT_EQ(t.groups[0].channels[0].c.load(), 0u);
}

TEST(Acceptor, AcceptsAQueueLongerThanOneBatch) {
  constexpr int kClients = 150;
  sockaddr_in backend_addr{};
  Fd backend = listen_on_loopback(backend_addr, SOCK_NONBLOCK, OneWorker::kBacklog);
  std::vector<Fd> clients;
  OneWorker proxy(endpoint_of(backend_addr), [&](const sockaddr_in& at) {
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back(::socket(AF_INET, SOCK_STREAM, 0));
      ASSERT_EQ(::connect(clients.back().get(), reinterpret_cast<const sockaddr*>(&at), sizeof at), 0)
          << std::strerror(errno);
    }
  });
  ASSERT_EQ(clients.size(), static_cast<size_t>(kClients));

  std::vector<Fd> served;
  while (served.size() < clients.size()) {
    Fd s(::accept(backend.get(), nullptr, nullptr));
    if (s) {
      served.push_back(std::move(s));
    } else if (errno != EAGAIN || !wait_for(backend.get(), POLLIN)) {
      break;  // nothing came within the bound: some client was never accepted
    }
  }
  EXPECT_EQ(served.size(), clients.size());
}

}  // namespace
}  // namespace balance::net
