#include "metrics/server.h"

#include <httplib.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>
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
// What is read of a connection, at most: a request's line and headers (httplib limits each line
// to 8 KiB but not their number, and keeps every header: 300 MB of "X: y" lines grew the master
// by 5.4 GiB). A GET from Prometheus or a browser is a few hundred bytes to a few KiB.
constexpr size_t kMaxRequestBytes = 64 * 1024;

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
  DeadlineStream(int fd, std::chrono::steady_clock::time_point deadline) : fd_(fd), deadline_(deadline) {}

  bool is_readable() const override { return off_ < len_ || wait(POLLIN); }
  bool is_writable() const override { return wait(POLLOUT); }

  // Buffered: httplib reads a request's lines a byte at a time.
  ssize_t read(char* ptr, size_t size) override {
    if (off_ == len_) {
      if (total_ == kMaxRequestBytes || !wait(POLLIN)) return -1;
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
  char buf_[4096];
  size_t off_ = 0;
  size_t len_ = 0;
  size_t total_ = 0;  // bytes read so far
};

// httplib's ThreadPool, but enqueue() waits while kMaxQueued connections already wait.
class BoundedPool final : public httplib::TaskQueue {
 public:
  explicit BoundedPool(size_t threads) {
    for (size_t i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { work(); });
      ::pthread_setname_np(threads_.back().native_handle(), "metrics");
    }
  }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [this] { return jobs_.size() < kMaxQueued; });
    jobs_.push_back(std::move(fn));
    lock.unlock();
    ready_.notify_one();
  }

  // Runs what is queued, then joins the threads.
  void shutdown() override {
    {
      const std::lock_guard lock(mutex_);
      shutdown_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      room_.notify_one();
      fn();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable room_;
  std::deque<std::function<void()>> jobs_;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

// httplib's server, serving each connection through a DeadlineStream, one request on it, and
// keeping track of the connections being served so that stopping can cut them.
class HttpServer final : public httplib::Server {
 public:
  // After stop(): ends every connection still being served (its request or answer fails at
  // once), and closes unread those the pool has yet to take.
  void cut_connections() {
    const std::lock_guard lock(mutex_);
    cut_ = true;
    for (const int fd : serving_) ::shutdown(fd, SHUT_RDWR);
  }

  // After a bind: httplib listens with a backlog of 5.
  bool set_backlog(int backlog) { return ::listen(svr_sock_, backlog) == 0; }

 private:
  bool process_and_close_socket(int fd) override {
    bool ok = false;
    bool serve = false;
    {
      const std::lock_guard lock(mutex_);
      serve = !cut_ && serving_.insert(fd).second;
    }
    if (serve) {
      DeadlineStream stream(fd, std::chrono::steady_clock::now() + kDeadline);
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
};

}  // namespace

struct Server::Impl {
  const core::Table& table;
  HttpServer http;
  std::thread thread;
  std::atomic<bool> finished{false};
  uint16_t port = 0;

  explicit Impl(const core::Table& t) : table(t) {}
  void routes();
  // What /metrics and /status.json show: the table's, and this process's dropped log lines.
  Snapshot snapshot() const {
    Snapshot snap = take_snapshot(table, now_ms());
    snap.log_lines_dropped = log::dropped_lines();
    return snap;
  }
};

void Server::Impl::routes() {
  http.new_task_queue = [] { return new BoundedPool(kPoolThreads); };
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let a second
  // instance bind the same address silently.
  http.set_socket_options([](int fd) {
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  });
  http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD") return httplib::Server::HandlerResponse::Unhandled;
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("method not allowed\n", "text/plain; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
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

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Server> Server::start(const core::Endpoint& addr, const core::Table& table, Failure& failure) {
  auto impl = std::make_unique<Impl>(table);
  impl->routes();
  impl->http.set_address_family(addr.family);
  errno = 0;
  const int port = addr.port != 0 ? (impl->http.bind_to_port(addr.host_string(), addr.port) ? addr.port : -1)
                                  : impl->http.bind_to_any_port(addr.host_string());
  if (port <= 0) {
    const int err = errno;
    failure = {kExitOsErr, "cannot listen for --metrics on " + addr.to_string() + ": " +
                               (err ? std::strerror(err) : "cannot bind") + ", exiting."};
    return nullptr;
  }
  impl->http.set_backlog(kBacklog);  // the default one still serves if this fails
  impl->port = static_cast<uint16_t>(port);
  Impl* raw = impl.get();
  {
    const BlockSignals blocked;  // the listening thread, and the pool it starts, inherit the mask
    raw->thread = std::thread([raw] {
      raw->http.listen_after_bind();
      raw->finished.store(true);
    });
    ::pthread_setname_np(raw->thread.native_handle(), "metrics");
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const { return impl_->port; }

Server::~Server() {
  // stop() does nothing until the listening thread has marked the server running, and must be
  // called once only (a second call finds no socket): wait for the mark, then stop.
  while (!impl_->finished.load() && !impl_->http.is_running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!impl_->finished.load()) impl_->http.stop();
  impl_->http.cut_connections();
  impl_->thread.join();
}

}  // namespace balance::metrics
