#include "net/loop.h"

#include <sys/eventfd.h>
#include <time.h>

#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace balance::net {
namespace {

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::abort();
}

constexpr int kMaxEvents = 256;

}  // namespace

uint64_t EventLoop::clock_ms() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

EventLoop::EventLoop()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      now_ms_(clock_ms()),
      timers_(now_ms_),
      waker_(*this),
      thread_id_(std::this_thread::get_id()) {
  if (!epoll_ || !wake_fd_ || !add(wake_fd_.get(), EPOLLIN, waker_)) error_ = errno;
}

void EventLoop::Waker::on_events(uint32_t) {
  uint64_t n;
  while (::read(loop_.wake_fd_.get(), &n, sizeof n) > 0) {
  }
}

bool EventLoop::control(int op, int fd, uint32_t events, Watch* watch) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = watch;
  return ::epoll_ctl(epoll_.get(), op, fd, &ev) == 0;
}

bool EventLoop::add(int fd, uint32_t events, Watch& watch) { return control(EPOLL_CTL_ADD, fd, events, &watch); }

bool EventLoop::retarget(int fd, uint32_t events, Watch& watch) { return control(EPOLL_CTL_MOD, fd, events, &watch); }

// The kernel adds EPOLLHUP and EPOLLERR to any mask: each is reported once (edge-triggered), to no one.
bool EventLoop::park(int fd) { return control(EPOLL_CTL_MOD, fd, EPOLLET, nullptr); }

void EventLoop::remove(int fd) {
  // ENOENT/EBADF only if the caller never added it: harmless, nothing to undo.
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::close(Fd& fd) {
  if (fork_fence_ > 0 && fd) remove(fd.get());
  fd.reset();
}

void EventLoop::defer(std::function<void()> task) { deferred_.push_back(std::move(task)); }

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    posted_.push_back(std::move(task));
    has_posted_.store(true, std::memory_order_release);
  }
  wake();
}

void EventLoop::run_posted() {
  if (!has_posted_.load(std::memory_order_acquire)) return;
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    batch.swap(posted_);
    has_posted_.store(false, std::memory_order_relaxed);
  }
  for (auto& task : batch) task();
}

void EventLoop::run_deferred() {
  // Tasks may defer more tasks; run until none is left.
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto& task : batch) task();
  }
}

void EventLoop::run() {
  thread_id_ = std::this_thread::get_id();
  epoll_event events[kMaxEvents];
  while (!stopping_.load(std::memory_order_acquire)) {
    const int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, timers_.poll_timeout_ms(now_ms_));
    if (n < 0 && errno != EINTR) die("balance: epoll_wait");
    now_ms_ = clock_ms();
    for (int i = 0; i < n; ++i) {
      if (auto* watch = static_cast<Watch*>(events[i].data.ptr)) watch->on_events(events[i].events);  // null: parked
    }
    // Posted tasks run between batches, never in the middle of one: a task may destroy a watch
    // (a drain destroys the acceptors) that a later event of the same batch still points to.
    run_posted();
    run_deferred();
    timers_.advance(now_ms_);
    run_deferred();
  }
  run_posted();  // nothing posted is lost: e.g. a drain request racing with stop
}

void EventLoop::stop() {
  stopping_.store(true, std::memory_order_release);
  wake();
}

void EventLoop::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_fd_.get(), &one, sizeof one);
}

void EventLoop::assert_in_loop_thread() const { assert(std::this_thread::get_id() == thread_id_); }

}  // namespace balance::net
