// A worker thread: one event loop, an acceptor on each of its listening sockets (normally one
// SO_REUSEPORT socket of its own), and the sessions it accepted (a connection stays on the
// thread that accepted it).
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "cli/config.h"
#include "core/table.h"
#include "net/loop.h"
#include "net/relay.h"
#include "net/socket_pool.h"

namespace balance::net {

class Acceptor;
class Session;

// What every worker shares, read-only after start-up (the Table is atomics throughout).
struct WorkerShared {
  const cli::Config& config;
  core::Table& table;
  bool dump;  // -p, in the foreground only
};

class Worker {
 public:
  // `cpu`: the CPU the thread is pinned to (--cpus), or none.
  Worker(const WorkerShared& shared, unsigned id, std::vector<int> listen_fds, std::optional<unsigned> cpu);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Spawns the thread, pinned to its CPU if it has one, and holds it until go(): so that no
  // worker serves unless all could be pinned. 0, or why the thread could not be pinned.
  int start();
  // Lets the thread start() spawned serve (true), or end before it has served (false).
  void go(bool serve);
  void stop_and_join();  // any thread: closes what is left
  // Any thread: stops accepting, then runs `stopped_accepting`; `drained` runs once its last
  // session has ended (at once if there is none). Both run on this worker's thread.
  void begin_drain(std::function<void()> stopped_accepting, std::function<void()> drained);
  // Any thread: raises (or lowers) the fork fence of this worker's loop (EventLoop::close);
  // `done` runs on the worker's thread once it is.
  void fence_forks(bool raise, std::function<void()> done);

  // 0, or why the worker cannot run (its event loop could not be made): do not start() it then.
  int error() const { return loop_.error(); }

  // Loop-thread API for sessions and the acceptor.
  EventLoop& loop() { return loop_; }
  const WorkerShared& shared() const { return shared_; }
  RelayBuffers& buffers() { return buffers_; }
  SocketPool& sockets() { return sockets_; }
  // Whether a session that ends now may give its server socket to sockets(): not while draining,
  // nor when it is the last session (the pool would be emptied right after).
  bool keeps_sockets() const { return on_drained_ == nullptr && sessions_.size() > 1; }
  unsigned id() const { return id_; }
  void adopt(std::unique_ptr<Session> session);
  // Destroys `session` once the current batch of events is done.
  void retire(Session& session);

 private:
  void run();
  void notify_if_drained();

  const WorkerShared& shared_;
  unsigned id_;
  EventLoop loop_;
  RelayBuffers buffers_;
  SocketPool sockets_{loop_};
  std::vector<int> listen_fds_;
  std::optional<unsigned> cpu_;
  std::promise<bool> gate_;  // go()
  bool held_ = false;        // started, go() not called yet
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<std::unique_ptr<Session>> sessions_;
  std::function<void()> on_drained_;  // set while draining
  std::thread thread_;
};

}  // namespace balance::net
