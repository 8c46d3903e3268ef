#include "metrics/server.h"

#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "log/log.h"
#include "metrics/prometheus.h"
#include "metrics/snapshot.h"
#include "metrics/status_json.h"
#include "metrics/status_page.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BALANCE_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define BALANCE_TSAN 1
#endif
#ifdef BALANCE_TSAN
// ThreadSanitizer does not see the synchronization inside libcpp-httplib, which is not built
// with it: pool threads parsing requests at once read a function-local static of the library
// (the set of method names) that the first one initialized, and the memcmp interceptor reported
// that as a race (50 concurrent scrapes were enough). Calls from that library into intercepted
// functions are not reported; balance's own code stays checked.
extern "C" const char* __tsan_default_suppressions();
extern "C" const char* __tsan_default_suppressions() { return "called_from_lib:libcpp-httplib.so\n"; }
#endif

namespace balance::metrics {
namespace {

// Few threads: this is an operator's endpoint, not a web server. One request per connection
// ("Connection: close"): a connection holds a thread for one request only, so waiting clients
// get their turn; a client that pipelines its requests learns that only the first is answered
// (httplib left the pipelined ones unanswered); and what follows a request, such as the body
// of a GET (never read), is not taken for the next request and held in memory (a 200 MB body
// grew the master by 260 MB). Scrapes come seconds apart; a new connection each time costs
// nothing worth keeping one alive for. Each wait for the client is bounded by kIoTimeoutMs and
// the whole exchange, from the thread taking the connection to the last byte of the answer,
// by kDeadline: httplib bounds each read only, so a client sending its headers a byte a
// second (their number is not limited) held a thread, and stopping or upgrading the master,
// for as long as it went on.
constexpr size_t kPoolThreads = 4;
// Accepted connections waiting for a serving thread. Beyond them the listening thread waits
// before accepting more, and new clients wait in the kernel's backlog (kBacklog) instead of
// holding descriptors of the master: 1,500 idle connections to the metrics port used to take
// every descriptor it had, and the data path shed every new client ("out of file descriptors").
constexpr size_t kMaxQueued = 16;
constexpr int kBacklog = SOMAXCONN;
constexpr int kIoTimeoutMs = 2000;
constexpr auto kDeadline = std::chrono::seconds(10);
constexpr auto kHandOverWait = std::chrono::seconds(2);
// What is read of a connection, at most: a request's line and headers (httplib limits each line
// to 8 KiB but not their number, and keeps every header: 300 MB of "X: y" lines grew the master
// by 5.4 GiB). A GET from Prometheus or a browser is a few hundred bytes to a few KiB.
constexpr size_t kMaxRequestBytes = 64 * 1024;
// Accepted connections whose request is still coming in: the listening thread reads them all
// at once, each for at most kRequestDeadline, and gives a serving thread only a connection whose
// request's line and headers are in (or that ended, or sent kMaxRequestBytes). A client sending
// its request a byte a second used to hold a serving thread for kDeadline: ten of them kept a
// scrape waiting 20 s, a hundred of them 250 s. While kMaxReading are read, new clients wait in
// the backlog.
constexpr size_t kMaxReading = 128;
constexpr auto kRequestDeadline = std::chrono::seconds(5);

// The page may run its own inline script and style and fetch from this server, nothing else.
constexpr const char* kPagePolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Threads created while this is alive start with the stop signals (and all other asynchronous
// signals) blocked; they inherit the mask of the thread that creates them.
class BlockSignals {
 public:
  BlockSignals() {
    sigset_t set;
    sigfillset(&set);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) sigdelset(&set, sig);
    ::pthread_sigmask(SIG_BLOCK, &set, &saved_);
  }
  ~BlockSignals() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  BlockSignals(const BlockSignals&) = delete;
  BlockSignals& operator=(const BlockSignals&) = delete;

 private:
  sigset_t saved_;
};

void no_store(httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
}

// A client's connection as httplib reads and writes it: every wait for the client is bounded by
// kIoTimeoutMs and by the connection's deadline, whichever comes first, and no more than
// kMaxRequestBytes are read.
class DeadlineStream final : public httplib::Stream {
 public:
  // `read` is what was read of the connection before (the start of the request).
  DeadlineStream(int fd, std::chrono::steady_clock::time_point deadline, std::string read)
      : fd_(fd), deadline_(deadline), pre_(std::move(read)), total_(std::min(pre_.size(), kMaxRequestBytes)) {}

  bool is_readable() const override { return pre_off_ < pre_.size() || off_ < len_ || wait(POLLIN); }
  bool is_writable() const override { return wait(POLLOUT); }

  // Buffered: httplib reads a request's lines a byte at a time.
  ssize_t read(char* ptr, size_t size) override {
    if (pre_off_ < pre_.size()) {
      const size_t n = std::min(size, pre_.size() - pre_off_);
      std::memcpy(ptr, pre_.data() + pre_off_, n);
      pre_off_ += n;
      return static_cast<ssize_t>(n);
    }
    if (off_ == len_) {
      // At the limit the request ends, as if the client had closed: httplib then answers what it
      // has (a request line longer than its 8 KiB gets 414, headers that do not end 400). A
      // failed read made it give up with no answer: a 100 KB URI got its connection closed,
      // where an 8 KiB one got 414.
      if (total_ == kMaxRequestBytes) return 0;
      if (!wait(POLLIN)) return -1;
      const ssize_t n = ::recv(fd_, buf_, std::min(sizeof buf_, kMaxRequestBytes - total_), 0);
      if (n <= 0) return n;
      off_ = 0;
      len_ = static_cast<size_t>(n);
      total_ += len_;
    }
    const size_t n = std::min(size, len_ - off_);
    std::memcpy(ptr, buf_ + off_, n);
    off_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!wait(POLLOUT)) return -1;
    return ::send(fd_, ptr, size, MSG_NOSIGNAL);
  }

  // The handlers do not ask who the client is.
  void get_remote_ip_and_port(std::string&, int&) const override {}
  void get_local_ip_and_port(std::string&, int&) const override {}
  int socket() const override { return fd_; }

 private:
  bool wait(short events) const {
    using namespace std::chrono;
    const auto left = duration_cast<milliseconds>(deadline_ - steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, events, 0};
    return ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, kIoTimeoutMs))) > 0;
  }

  int fd_;
  std::chrono::steady_clock::time_point deadline_;
  std::string pre_;  // read before this stream was made
  size_t pre_off_ = 0;
  char buf_[4096];
  size_t off_ = 0;
  size_t len_ = 0;
  size_t total_;  // bytes read so far
};

// The serving threads. push() waits while kMaxQueued connections already wait for one.
class BoundedPool {
 public:
  explicit BoundedPool(size_t threads) {
    for (size_t i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { work(); });
      ::pthread_setname_np(threads_.back().native_handle(), "metrics");
    }
  }
  ~BoundedPool() { shutdown(); }
  BoundedPool(const BoundedPool&) = delete;
  BoundedPool& operator=(const BoundedPool&) = delete;

  // Queues `job`, waiting for room; false (nothing queued) when there is none and
  // stop_waiting() was called.
  bool push(std::function<void()> job) {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [this] { return jobs_.size() < kMaxQueued || no_wait_; });
    if (jobs_.size() >= kMaxQueued) return false;
    jobs_.push_back(std::move(job));
    lock.unlock();
    ready_.notify_one();
    return true;
  }

  // Ends a wait in push(), and every later one, at once.
  void stop_waiting() {
    {
      const std::lock_guard lock(mutex_);
      no_wait_ = true;
    }
    room_.notify_all();
  }

  // Waits until nothing is queued or running, at most until `deadline`; false if it is not so.
  bool wait_idle(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    return idle_.wait_until(lock, deadline, [this] { return jobs_.empty() && running_ == 0; });
  }

  // Runs what is queued, then joins the threads.
  void shutdown() {
    {
      const std::lock_guard lock(mutex_);
      shutdown_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        ++running_;
      }
      room_.notify_one();
      job();
      {
        const std::lock_guard lock(mutex_);
        --running_;
      }
      idle_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable room_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> jobs_;
  size_t running_ = 0;
  bool no_wait_ = false;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

// httplib's server, serving each connection it is given through a DeadlineStream, one request
// on it, and keeping track of the connections being served so that stopping can cut them.
class HttpServer final : public httplib::Server {
 public:
  // Answers one request on the accepted connection `fd`, of which `read` was read already,
  // then closes it.
  void serve(int fd, std::string read) {
    read_ = std::move(read);
    process_and_close_socket(fd);
  }

  // Ends every connection still being served (its request or answer fails at once); those the
  // pool has yet to take are closed unread.
  void cut_connections() {
    const std::lock_guard lock(mutex_);
    cut_ = true;
    for (const int fd : serving_) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  bool process_and_close_socket(int fd) override {
    bool ok = false;
    bool serve = false;
    {
      const std::lock_guard lock(mutex_);
      serve = !cut_ && serving_.insert(fd).second;
    }
    if (serve) {
      DeadlineStream stream(fd, std::chrono::steady_clock::now() + kDeadline, std::move(read_));
      bool closed = false;
      ok = process_request(stream, true, closed, nullptr);
      const std::lock_guard lock(mutex_);  // out of the set before the number can be reused
      serving_.erase(fd);
    }
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
    return ok;
  }

  std::mutex mutex_;
  std::unordered_set<int> serving_;
  bool cut_ = false;
  // What serve() passes on to process_and_close_socket() (httplib's signature has no room):
  // one per serving thread.
  static thread_local std::string read_;
};

thread_local std::string HttpServer::read_;

// A listening socket for `addr`, non-blocking (during an upgrade two masters poll it, and an
// accept can find the client already taken by the other); -1 with errno on failure.
int bind_listener(const core::Endpoint& addr) {
  const int fd = ::socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  // SO_REUSEADDR only: SO_REUSEPORT would let a second instance bind the same address silently.
  const int one = 1;
  const int zero = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr.family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // [::] takes IPv4 too
  sockaddr_storage ss{};
  const socklen_t len = addr.to_sockaddr(ss);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0 || ::listen(fd, kBacklog) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

// The port `fd` listens on; 0 when it is not a listening TCP socket.
uint16_t listening_port(int fd) {
  int listening = 0;
  socklen_t optlen = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0 || listening == 0) return 0;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  const auto local = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  return local ? local->port : 0;
}

}  // namespace

struct Server::Impl {
  const core::Table& table;
  HttpServer http;
  int listen_fd;  // this process's descriptor of the listening socket; -1 once it stopped accepting
  uint16_t port;
  int wake_fd = -1;  // eventfd: stop accepting
  // A descriptor (/dev/null) given up to accept a scrape when the process is out of them: the
  // numbers are worth reading most when balance runs out. The serving job takes it back.
  std::atomic<int> spare{-1};
  std::unique_ptr<BoundedPool> pool;
  std::thread thread;

  Impl(const core::Table& t, int fd, uint16_t p) : table(t), listen_fd(fd), port(p) {}
  ~Impl() {
    if (listen_fd >= 0) ::close(listen_fd);
    if (wake_fd >= 0) ::close(wake_fd);
    if (spare >= 0) ::close(spare);
  }
  void routes();
  bool run(Failure& failure);
  void accept_loop();
  int accept_with_spare();
  void take_spare_back();
  // Waits up to `ms` for the wake-up; true if it came.
  bool woken(int ms) const {
    pollfd p{wake_fd, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }
  // What /metrics and /status.json show: the table's, and this process's dropped and lost log lines.
  Snapshot snapshot() const {
    Snapshot snap = take_snapshot(table, now_ms());
    snap.log_lines_dropped = log::dropped_lines();
    snap.log_lines_lost = log::lost_lines();
    return snap;
  }
};

void Server::Impl::routes() {
  http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD") return httplib::Server::HandlerResponse::Unhandled;
    no_store(res);
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("method not allowed\n", "text/plain; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.get_header_value("Cache-Control").empty()) no_store(res);  // errors too: nothing is cached
    if (res.status == 404) res.set_content("not found\n", "text/plain; charset=utf-8");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    no_store(res);
    res.set_content(format_prometheus(snapshot()), kPrometheusContentType);
  });
  http.Get("/status.json", [this](const httplib::Request&, httplib::Response& res) {
    no_store(res);
    res.set_content(format_status_json(snapshot()), "application/json");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    no_store(res);
    res.set_header("Content-Security-Policy", kPagePolicy);
    res.set_content(std::string(status_page_html()), "text/html; charset=utf-8");
  });
}

namespace {

// A connection whose request is being read by the listening thread.
struct Reading {
  int fd;
  std::string read;  // what came so far
  std::chrono::steady_clock::time_point deadline;
  bool spent_spare;
};

enum class ReadResult { More, Request, Failed };

// Reads what the client sent: Request once its line and headers are in (the blank line came),
// it ended its side, or kMaxRequestBytes came (httplib answers what it makes of that); Failed
// when the connection failed.
ReadResult read_more(Reading& r) {
  char buf[4096];
  const ssize_t n = ::recv(r.fd, buf, std::min(sizeof buf, kMaxRequestBytes - r.read.size()), MSG_DONTWAIT);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? ReadResult::More : ReadResult::Failed;
  if (n == 0) return ReadResult::Request;
  const size_t from = r.read.size() < 3 ? 0 : r.read.size() - 3;
  r.read.append(buf, static_cast<size_t>(n));
  const bool ended = r.read.find("\r\n\r\n", from) != std::string::npos || r.read.find("\n\n", from) != std::string::npos;
  return ended || r.read.size() >= kMaxRequestBytes ? ReadResult::Request : ReadResult::More;
}

}  // namespace

// Accepts until woken, reading each connection's request (at most kMaxReading at once, each
// for at most kRequestDeadline) and handing it to the pool once it is in (which makes this wait
// while kMaxQueued connections already wait for a serving thread).
void Server::Impl::accept_loop() {
  using Clock = std::chrono::steady_clock;
  std::vector<Reading> reading;
  std::vector<pollfd> p;
  const auto drop = [this](const Reading& r) {
    ::close(r.fd);
    if (r.spent_spare) take_spare_back();
  };
  const auto hand_over = [this, &drop](Reading& r) {
    const bool queued = pool->push([this, fd = r.fd, read = std::move(r.read), spent = r.spent_spare]() mutable {
      http.serve(fd, std::move(read));
      if (spent) take_spare_back();
    });
    if (!queued) drop(r);  // stopping
  };
  for (;;) {
    p.clear();
    p.push_back({wake_fd, POLLIN, 0});
    p.push_back({reading.size() < kMaxReading ? listen_fd : -1, POLLIN, 0});
    int timeout = -1;
    const auto now = Clock::now();
    for (const Reading& r : reading) {
      p.push_back({r.fd, POLLIN, 0});
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(r.deadline - now).count();
      const int ms = static_cast<int>(std::clamp<int64_t>(left, 0, INT32_MAX));
      timeout = timeout < 0 ? ms : std::min(timeout, ms);
    }
    if (::poll(p.data(), p.size(), timeout) < 0) {
      if (errno == EINTR) continue;
      if (woken(100)) break;  // ENOMEM: try again a little later
      continue;
    }
    if (p[0].revents != 0) break;
    // The requests that came in go to the pool; those out of time are closed unanswered.
    const auto after = Clock::now();
    size_t kept = 0;
    for (size_t i = 0; i < reading.size(); ++i) {
      Reading& r = reading[i];
      const ReadResult got = p[i + 2].revents != 0 ? read_more(r) : ReadResult::More;
      if (got == ReadResult::Request) {
        hand_over(r);
      } else if (got == ReadResult::Failed || after >= r.deadline) {
        drop(r);
      } else {
        if (kept != i) reading[kept] = std::move(r);
        ++kept;
      }
    }
    reading.resize(kept);
    const short listen_events = p[1].fd >= 0 ? p[1].revents : 0;
    if ((listen_events & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      log::write(log::Level::Error, "--metrics: the listening socket failed; no more scrapes are answered");
      break;
    }
    if ((listen_events & POLLIN) == 0) continue;
    take_spare_back();  // if a scrape gave it up and could not take it back
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);  // blocking, as the stream expects
    bool spent_spare = false;
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
      fd = accept_with_spare();
      spent_spare = fd >= 0;
    }
    if (fd >= 0) {
      reading.push_back({fd, {}, Clock::now() + kRequestDeadline, spent_spare});
    } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      if (woken(100)) break;  // the client waits in the backlog meanwhile
    }
    // EAGAIN: the other master of an upgrade took the client; ECONNABORTED: it gave up.
  }
  // Stopping or handed over: what is being read goes to the pool, which serves it during the
  // hand-over wait or closes it.
  for (Reading& r : reading) hand_over(r);
}

// Out of descriptors: accepts with the spare's; -1 (with errno) when there is no spare or the
// client is gone.
int Server::Impl::accept_with_spare() {
  const int s = spare.exchange(-1);
  if (s < 0) {
    errno = EMFILE;
    return -1;
  }
  ::close(s);
  const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    take_spare_back();
    errno = err;
  }
  return fd;
}

void Server::Impl::take_spare_back() {
  if (spare.load(std::memory_order_relaxed) >= 0) return;
  const int s = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (s < 0) return;  // not now: the next accept tries again
  if (const int old = spare.exchange(s); old >= 0) ::close(old);
}

bool Server::Impl::run(Failure& failure) {
  wake_fd = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    failure = {kExitOsErr, std::string("cannot serve --metrics: ") + std::strerror(errno) + ", exiting."};
    return false;
  }
  take_spare_back();
  routes();
  const BlockSignals blocked;  // the listening thread and the pool inherit the mask
  pool = std::make_unique<BoundedPool>(kPoolThreads);
  thread = std::thread([this] { accept_loop(); });
  ::pthread_setname_np(thread.native_handle(), "metrics");
  return true;
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Server> Server::start(const core::Endpoint& addr, const core::Table& table, Failure& failure) {
  const int fd = bind_listener(addr);
  const uint16_t port = fd >= 0 ? listening_port(fd) : 0;
  if (port == 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    failure = {kExitOsErr, "cannot listen for --metrics on " + addr.to_string() + ": " + std::strerror(err) + ", exiting."};
    return nullptr;
  }
  auto impl = std::make_unique<Impl>(table, fd, port);
  if (!impl->run(failure)) return nullptr;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::unique_ptr<Server> Server::adopt(int listen_fd, const core::Table& table, Failure& failure) {
  const uint16_t port = listening_port(listen_fd);
  if (port == 0) {
    ::close(listen_fd);
    failure = {kExitOsErr, "cannot serve --metrics: the inherited descriptor is not a listening socket, exiting."};
    return nullptr;
  }
  auto impl = std::make_unique<Impl>(table, listen_fd, port);
  if (!impl->run(failure)) return nullptr;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const { return impl_->port; }

int Server::listen_fd() const { return impl_->listen_fd; }

// Wakes the listening thread (out of a wait for the pool's room too) and joins it.
void Server::stop_accepting() {
  if (impl_->listen_fd < 0) return;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(impl_->wake_fd, &one, sizeof one);
  impl_->pool->stop_waiting();
  impl_->thread.join();
  ::close(std::exchange(impl_->listen_fd, -1));
}

// After a hand-over the scrapes this server accepted are answered first (their answer is
// ready in a few milliseconds; a client that holds its connection is cut after kHandOverWait):
// the new master has the port, and this one is only draining.
Server::~Server() {
  if (impl_->listen_fd < 0) impl_->pool->wait_idle(std::chrono::steady_clock::now() + kHandOverWait);
  stop_accepting();
  impl_->http.cut_connections();
  impl_->pool->shutdown();  // what is queued is closed unread (cut), then the threads join
}

}  // namespace balance::metrics
