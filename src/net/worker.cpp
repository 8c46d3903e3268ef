#include "net/worker.h"

#include <pthread.h>
#include <sched.h>

#include <string>
#include <utility>

#include "net/acceptor.h"
#include "net/session.h"

namespace balance::net {

Worker::Worker(const WorkerShared& shared, unsigned id, std::vector<int> listen_fds, std::optional<unsigned> cpu)
    : shared_(shared), id_(id), listen_fds_(std::move(listen_fds)), cpu_(cpu) {}

Worker::~Worker() {
  stop_and_join();
}

// The acceptors (each with its spare descriptor) are made here, before the thread: once every
// worker is started the process holds all it needs to serve, and says READY=1.
int Worker::start() {
  for (int fd : listen_fds_) acceptors_.push_back(std::make_unique<Acceptor>(*this, fd));
  thread_ = std::thread([this, gate = gate_.get_future()]() mutable {
    if (gate.get()) run();
  });
  ::pthread_setname_np(thread_.native_handle(), ("worker " + std::to_string(id_)).c_str());  // top -H, ps -L
  held_ = true;
  if (!cpu_) return 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(*cpu_, &set);
  return ::pthread_setaffinity_np(thread_.native_handle(), sizeof set, &set);
}

void Worker::go(bool serve) {
  held_ = false;
  gate_.set_value(serve);
}

void Worker::stop_and_join() {
  if (!thread_.joinable()) return;
  if (held_) go(false);
  loop_.stop();
  thread_.join();
}

void Worker::run() {
  loop_.run();
  acceptors_.clear();
  // What is left when the loop stops is cut off: each session logs it and gives its slot back.
  for (auto& s : sessions_) s->shutdown();
  sessions_.clear();
}

void Worker::begin_drain(std::function<void()> stopped_accepting, std::function<void()> drained) {
  loop_.post([this, stopped_accepting = std::move(stopped_accepting), drained = std::move(drained)]() mutable {
    acceptors_.clear();  // the listeners leave this loop: no accept can be under way any more
    sockets_.clear();    // no new connect will take them
    stopped_accepting();
    on_drained_ = std::move(drained);
    notify_if_drained();
  });
}

void Worker::fence_forks(bool raise, std::function<void()> done) {
  loop_.post([this, raise, done = std::move(done)] {
    if (raise) loop_.raise_fork_fence();
    else loop_.lower_fork_fence();
    if (done) done();
  });
}

void Worker::notify_if_drained() {
  if (on_drained_ && sessions_.empty()) std::exchange(on_drained_, nullptr)();
}

void Worker::adopt(std::unique_ptr<Session> session) {
  session->index = sessions_.size();
  sessions_.push_back(std::move(session));
}

void Worker::retire(Session& session) {
  Session* s = &session;
  loop_.defer([this, s] {
    const size_t i = s->index;
    // Swap-remove keeps removal O(1); the moved session learns its new index.
    if (i + 1 != sessions_.size()) {
      sessions_[i] = std::move(sessions_.back());
      sessions_[i]->index = i;
    }
    sessions_.pop_back();
    if (sessions_.empty()) {  // no connection left: no pipe or socket kept either
      buffers_.pipes.clear();
      sockets_.clear();
    }
    notify_if_drained();
  });
}

}  // namespace balance::net
