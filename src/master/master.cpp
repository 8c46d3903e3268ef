#include "master/master.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ctl/segment.h"
#include "log/log.h"
#include "master/cpus.h"
#include "master/daemon.h"
#include "master/supervisor.h"
#include "master/upgrade.h"
#include "master/watchdog.h"
#include "metrics/server.h"
#include "metrics/snapshot.h"
#include "net/health_checker.h"
#include "net/loop.h"
#include "net/sockets.h"
#include "net/worker.h"

namespace balance::master {
namespace {

// A proxied connection costs two descriptors (four while splicing): take all the system allows.
void raise_descriptor_limit() {
  rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

void fill_table(core::Table& table, const cli::Config& config) {
  for (uint32_t g = 0; g < config.groups.size(); ++g) {
    table.groups[g].type.store(static_cast<uint32_t>(config.groups[g].type));
    for (const auto& ch : config.groups[g].channels) {
      table.append_channel(g, ch.endpoint, ch.maxc, true, ch.weight);
    }
  }
}

void trace_config(const cli::Config& config, unsigned threads) {
  const std::string idle = config.idle_timeout_s > 0 ? std::to_string(config.idle_timeout_s) + "s" : "never";
  BALANCE_DEBUG("listening on %s port %u, %u worker threads, connect timeout %us, idle timeout %s",
                config.bind ? config.bind->host_string().c_str() : "all addresses", config.port, threads,
                config.connect_timeout_s, idle.c_str());
  if (!config.loopback_cc.empty()) BALANCE_DEBUG("loopback connections: congestion control %s", config.loopback_cc.c_str());
  for (size_t i = 0; i < config.cpus.size(); ++i) BALANCE_DEBUG("worker %zu pinned to CPU %u", i, config.cpus[i]);
  for (size_t g = 0; g < config.groups.size(); ++g) {
    const auto& group = config.groups[g];
    for (size_t c = 0; c < group.channels.size(); ++c) {
      BALANCE_DEBUG("group %zu (%s) channel %zu: %s maxc %u weight %u", g, metrics::group_type_name(group.type), c,
                    group.channels[c].endpoint.to_string().c_str(), group.channels[c].maxc, group.channels[c].weight);
    }
  }
}

// A -B of one address family cannot reach the channels of the other: every try of them fails
// (and the client goes on to the next channel), which only -d would show. Empty when all match.
std::string out_bind_family_warning(const cli::Config& config) {
  const int family = config.out_bind->unmapped().family;
  std::string first;
  size_t others = 0;
  for (const auto& group : config.groups) {
    for (const auto& ch : group.channels) {
      if (ch.endpoint.unmapped().family == family) continue;
      if (first.empty()) {
        first = ch.endpoint.to_string();
      } else {
        ++others;
      }
    }
  }
  if (first.empty()) return "";
  const bool v6 = family == AF_INET6;
  const std::string more = others != 0 ? " (and " + std::to_string(others) + " more); connections to them fail"
                                       : "; connections to it fail";
  return "-B " + config.out_bind->host_string() + " is " + (v6 ? "IPv6" : "IPv4") + " and cannot reach the " +
         (v6 ? "IPv4" : "IPv6") + " channel " + first + more;
}

// The running proxy: what start-up built, in the order it must be torn down.
class Proxy {
 public:
  Proxy(const cli::Config& config, std::vector<net::Fd> listeners, std::unique_ptr<ctl::Segment> segment)
      : config_(config),
        listeners_(std::move(listeners)),
        segment_(std::move(segment)),
        supervisor_(config.foreground) {}

  // Starts the --metrics server, if asked for, on the socket an upgrade's old master handed
  // over (`inherited`) or on one bound now; false (with `failure`) when it cannot listen.
  bool start_metrics(net::Fd inherited, Failure& failure);
  // A start that failed after the segment was made: nobody will serve from it.
  void discard_segment() { segment_->unlink(); }
  // Starts the workers; the proxy serves from here on. False (with `failure`) when one of them,
  // or the health checker, cannot be made (out of descriptors); none is started then.
  bool start(Failure& failure);
  // Serves until a stop signal, then stops (gracefully unless told otherwise).
  void run();
  // What systemctl status shows while it serves (sd_notify STATUS=).
  std::string serving_status() const;

 private:
  enum class Upgraded { HandedOver, Failed, Stop, StopNow };
  void drain();
  Upgraded upgrade();
  bool stop_while_upgrading(Event& stop);
  void restore_table();
  void fence_forks(bool raise);
  std::vector<int> listeners_for(unsigned i, unsigned threads) const;
  void steer_listeners(unsigned threads) const;
  unsigned worker_count() const { return static_cast<unsigned>(workers_.size()); }

  const cli::Config& config_;
  std::vector<net::Fd> listeners_;  // normally one per worker (SO_REUSEPORT)
  std::unique_ptr<ctl::Segment> segment_;
  std::unique_ptr<metrics::Server> metrics_;  // after segment_: stops before the table is unmapped
  Supervisor supervisor_;  // before the workers: they call back into it until joined
  std::unique_ptr<net::WorkerShared> shared_;
  std::vector<std::unique_ptr<net::Worker>> workers_;
  std::unique_ptr<net::HealthChecker> checker_;
  Watchdog watchdog_;         // pings the loops above, which run until run() returns
  bool handed_over_ = false;  // a new master took over the socket and the segment
};

bool Proxy::start_metrics(net::Fd inherited, Failure& failure) {
  if (!config_.metrics) return true;
  metrics_ = inherited ? metrics::Server::adopt(inherited.release(), segment_->table(), failure)
                       : metrics::Server::start(*config_.metrics, segment_->table(), failure);
  return metrics_ != nullptr;
}

bool Proxy::start(Failure& failure) {
  core::Table& table = segment_->table();
  const unsigned threads = worker_threads(config_);
  table.header.threads.store(threads);
  table.header.grace_s.store(config_.grace_s);
  trace_config(config_, threads);
  // -p writes to the terminal; a daemon has none, so it never dumps.
  shared_ = std::make_unique<net::WorkerShared>(
      net::WorkerShared{config_, table, config_.packet_dump && config_.foreground});
  steer_listeners(threads);
  int error = 0;
  for (unsigned i = 0; i < threads && error == 0; ++i) {
    const auto cpu = config_.cpus.empty() ? std::nullopt : std::optional<unsigned>(config_.cpus[i]);
    workers_.push_back(std::make_unique<net::Worker>(*shared_, i, listeners_for(i, threads), cpu));
    error = workers_.back()->error();
  }
  if (error == 0 && config_.check_interval_s > 0) {
    checker_ = std::make_unique<net::HealthChecker>(table, config_);
    error = checker_->error();
  }
  if (error != 0) {
    failure = {kExitOsErr, std::string("cannot create an event loop: ") + std::strerror(error) + ", exiting."};
    checker_.reset();
    workers_.clear();
    return false;
  }
  segment_->guard_size(supervisor_.wake_fd());  // before any thread serves from the table
  int pin_error = 0;
  unsigned unpinned = 0;
  for (unsigned i = 0; i < threads; ++i) {
    if (const int err = workers_[i]->start(); err != 0 && pin_error == 0) {
      pin_error = err;
      unpinned = i;
    }
  }
  for (auto& w : workers_) w->go(pin_error == 0);  // all serve, or none
  if (pin_error != 0) {
    failure = {kExitOsErr, "cannot pin worker " + std::to_string(unpinned) + " to CPU " +
                               std::to_string(config_.cpus[unpinned]) + ": " + std::strerror(pin_error) + ", exiting."};
    checker_.reset();
    workers_.clear();
    return false;
  }
  if (checker_) checker_->start();
  std::vector<net::EventLoop*> loops;
  for (auto& w : workers_) loops.push_back(&w->loop());
  if (checker_) loops.push_back(&checker_->loop());
  watchdog_.watch(std::move(loops));
  return true;
}

std::string Proxy::serving_status() const {
  const std::string where = config_.bind ? config_.bind->to_string() : "port " + std::to_string(config_.port);
  const std::string cpus = config_.cpus.empty() ? "" : " on CPUs " + cpu_list_text(config_.cpus);
  return "serving " + where + " (" + std::to_string(worker_count()) + " worker threads" + cpus +
         (checker_ ? ", health checks" : "") + (metrics_ ? ", metrics on " + config_.metrics->to_string() : "") + ")";
}

// Another process truncated the segment's file; the fault handler put the size back, and the
// pages cut off read as zeros. The table is written anew from the command line, so that the
// workers find channels and the control shell a valid header again; what was changed at run
// time is lost. Workers read the table throughout, as they read a corrupted one: no crash, and
// their connection counts only ever go down to zero.
void Proxy::restore_table() {
  log::write(log::Level::Error,
             "the control segment was truncated by another process: its state is lost; written anew from the "
             "command line");
  segment_->reinitialize([this](core::Table& table) {
    fill_table(table, config_);
    table.header.threads.store(worker_count());
    table.header.grace_s.store(config_.grace_s);
    if (checker_) table.header.flags.fetch_or(core::kFlagChecks);
  });
}

// With --cpus, each listener names the CPU of the worker that accepts on it, so that the kernel
// hands a connection to the worker on the CPU that took its SYN; a listener shared by several
// workers (an upgrade from a master with fewer threads) names none. Without --cpus none does,
// inherited listeners included (the predecessor may have pinned its workers).
void Proxy::steer_listeners(unsigned threads) const {
  const bool own = !config_.cpus.empty() && listeners_.size() >= threads;
  for (size_t j = 0; j < listeners_.size(); ++j) {
    const int cpu = own ? static_cast<int>(config_.cpus[j % threads]) : -1;
    if (const int err = net::set_incoming_cpu(listeners_[j].get(), cpu); err != 0 && cpu >= 0) {
      log::write(log::Level::Warning, "cannot steer connections to worker %zu's listener (SO_INCOMING_CPU): %s",
                 j % threads, std::strerror(err));
    }
  }
}

// The listeners worker `i` of `threads` accepts on: its own, and any beyond the thread count
// (an upgrade from a master with more threads); workers beyond the listener count share one.
std::vector<int> Proxy::listeners_for(unsigned i, unsigned threads) const {
  std::vector<int> fds;
  const size_t n = listeners_.size();
  if (i >= n) {
    fds.push_back(listeners_[i % n].get());
    return fds;
  }
  for (size_t j = i; j < n; j += threads) fds.push_back(listeners_[j].get());
  return fds;
}

void Proxy::run() {
  for (;;) {
    watchdog_.tick();
    const Event e = supervisor_.wait(watchdog_.wait_ms());
    if (segment_->take_truncation()) restore_table();
    if (e == Event::Stop) {
      drain();
      break;
    }
    if (e == Event::StopNow) break;
    if (e != Event::Upgrade) continue;
    const Upgraded u = upgrade();
    if (u == Upgraded::StopNow) break;
    if (u != Upgraded::Failed) {  // handed over, or told to stop while the new master started
      drain();
      break;
    }
  }
  watchdog_.stop();
  if (checker_) checker_->stop_and_join();
  for (auto& w : workers_) w->stop_and_join();  // what is left is closed now
  if (!handed_over_) segment_->unlink();  // a successor serves from it otherwise
  log::write(log::Level::Notice, "stopped");
}

// Starts the new master; true once it serves (this master should then drain and go).
//
// Under systemd (Type=notify, NotifyAccess=main) this master, the main process, says it all:
// RELOADING=1 now; READY=1 when the upgrade is over, in the same message as MAINPID= when the
// new master took over (so that systemd takes it from the process it still knows as the main
// one). The new master says nothing at start: its READY=1 came before MAINPID= and systemd
// refused it (with NotifyAccess=main, only the main process is heard).
//
// A stop signal that comes while the new master starts (until it reports) wins: the upgrade is
// given up, the new master killed before it served, and this master stops. Other signals wait.
Proxy::Upgraded Proxy::upgrade() {
  log::write(log::Level::Notice, "SIGUSR2: starting a new master");
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=upgrading: starting a new master",
             static_cast<unsigned long long>(net::EventLoop::clock_ms()) * 1000);
  Failure failure;
  std::vector<int> listen_fds;
  for (const auto& fd : listeners_) listen_fds.push_back(fd.get());
  Event stop = Event::Timeout;
  const Interruption interruption{supervisor_.signal_fd(), [this, &stop] { return stop_while_upgrading(stop); },
                                  [this] { watchdog_.tick(); }};
  fence_forks(true);
  // The new master accepts scrapes from the same --metrics socket, next to this one until it serves.
  const auto pid = start_successor(listen_fds, metrics_ ? metrics_->listen_fd() : -1, segment_->fd(), interruption,
                                   failure);
  fence_forks(false);  // the child has exec'd (or is gone): it holds no session's socket any more
  if (!pid) {
    // The successor may have got as far as naming itself master in the table before it failed
    // (at --metrics, say): the control shell and `kill` would find no master at all.
    segment_->publish_master();
    if (stop != Event::Timeout) {
      log::write(log::Level::Notice, "%s", failure.message.c_str());
      return stop == Event::StopNow ? Upgraded::StopNow : Upgraded::Stop;
    }
    log::write(log::Level::Error, "%s; this master goes on serving", failure.message.c_str());
    sd_notifyf(0, "READY=1\nSTATUS=%s; the running master goes on serving", failure.message.c_str());
    return Upgraded::Failed;
  }
  log::write(log::Level::Notice, "new master %d serves: this master stops accepting and drains", *pid);
  sd_notifyf(0, "MAINPID=%d\nREADY=1\nSTATUS=%s", *pid, serving_status().c_str());
  handed_over_ = true;
  if (metrics_) metrics_->stop_accepting();  // the scrapes it is answering are answered
  watchdog_.stop();  // the new master is the main process: it pings from now on
  // The new master checks the channels and writes their health into the shared table; a second
  // checker here would double the checks and, with verdicts a check apart, flip a channel back.
  if (checker_) checker_->stop_and_join();
  return Upgraded::HandedOver;
}

// A signal came while the new master starts: true (with `stop` set) for a stop signal, which
// gives the upgrade up.
bool Proxy::stop_while_upgrading(Event& stop) {
  const Event e = supervisor_.wait(0);
  if (e == Event::Upgrade) log::write(log::Level::Warning, "SIGUSR2 ignored: an upgrade is under way");
  if (e != Event::Stop && e != Event::StopNow) return false;
  stop = e;
  return true;
}

// Raises (returning once every worker has it up) or lowers the fork fence of every worker's loop
// (EventLoop::close): while a fork's child has not exec'd yet, closing a socket must take it out
// of epoll explicitly. The workers run until this thread stops them, so each answers.
void Proxy::fence_forks(bool raise) {
  std::latch up(static_cast<std::ptrdiff_t>(workers_.size()));
  for (auto& w : workers_) w->fence_forks(raise, [&up] { up.count_down(); });
  up.wait();
}

// Stops accepting (new clients are refused once every worker let go of the listener) and lets
// the live connections finish, for up to the grace period or until a second stop signal.
void Proxy::drain() {
  if (!handed_over_) {  // else the new master is the service now
    sd_notifyf(0, "STOPPING=1\nSTATUS=stopping: open connections may finish for up to %u s", config_.grace_s);
    segment_->table().header.flags.fetch_or(core::kFlagStopping);
  }
  for (auto& w : workers_) w->begin_drain(supervisor_.stopped_accepting_callback(), supervisor_.drained_callback());
  const uint64_t deadline = net::EventLoop::clock_ms() + uint64_t{config_.grace_s} * 1000u;
  for (;;) {
    watchdog_.tick();
    if (!listeners_.empty() && supervisor_.stopped_accepting() == worker_count()) listeners_.clear();
    if (supervisor_.drained() == worker_count()) return;
    const uint64_t now = net::EventLoop::clock_ms();
    if (now >= deadline) {
      log::write(log::Level::Notice, "grace period over: closing the remaining connections");
      return;
    }
    const int until_deadline = static_cast<int>(std::min<uint64_t>(deadline - now, 60000));
    const int ping = watchdog_.wait_ms();  // -1 without a watchdog
    const Event e = supervisor_.wait(ping < 0 ? until_deadline : std::min(until_deadline, ping));
    if (e == Event::StopNow) return;
    if (e == Event::Upgrade) {  // said, not done: the operator would otherwise take it for done
      log::write(log::Level::Warning, handed_over_ ? "SIGUSR2 ignored: this master was replaced and drains"
                                                   : "SIGUSR2 ignored: this master is stopping");
    }
  }
}

// The listening sockets: inherited from the master being upgraded, or bound now (one per worker).
std::vector<net::Fd> open_listeners(const cli::Config& config, std::optional<Inheritance>& inheritance,
                                    Failure& failure) {
  if (inheritance) {
    // A predecessor of an older version may not have set them all (SO_OOBINLINE came later),
    // and the relay needs them on every client socket, which inherits them from the listener.
    // Only what an upgrade hands over is served from: a descriptor that is no listening TCP
    // socket (BALANCE_UPGRADE set by hand) left a master that reported serving, served no one,
    // and logged "cannot watch the listening socket" several times a second.
    for (const auto& fd : inheritance->listeners) {
      if (!net::is_tcp_listener(fd.get())) {
        failure = {kExitOsErr, "cannot serve: inherited descriptor " + std::to_string(fd.get()) +
                                   " (BALANCE_UPGRADE) is not a listening TCP socket, exiting."};
        return {};
      }
    }
    for (const auto& fd : inheritance->listeners) {
      net::set_stream_options(fd.get());
      if (auto local = net::local_endpoint(fd.get())) net::use_loopback_cc(fd.get(), *local, config.loopback_cc);
    }
    return std::move(inheritance->listeners);
  }
  return net::make_listeners({config.bind, config.port, config.force_ipv6, config.loopback_cc}, worker_threads(config),
                             failure);
}

// The control segment: the predecessor's (state carries over), or a fresh one filled from the
// command line.
std::unique_ptr<ctl::Segment> open_segment(const cli::Config& config, const std::optional<Inheritance>& inheritance,
                                           Failure& failure) {
  const ctl::InstanceId id{config.port, config.bind_text, config.use_mmap};
  if (inheritance) return ctl::Segment::adopt(id, inheritance->segment_fd, failure);
  return ctl::Segment::create(id, failure, [&config](core::Table& table) { fill_table(table, config); });
}

}  // namespace

bool settle_loopback_cc(cli::Config& config, Failure& failure, std::string& note) {
  if (config.loopback_cc.empty()) return true;
  const int err = net::congestion_control_error(config.loopback_cc);
  if (err == 0) return true;
  if (config.loopback_cc_given) {
    failure = {kExitOsErr, "cannot use congestion control " + config.loopback_cc + " (--loopback-cc): " +
                               std::strerror(err) + ", exiting."};
    return false;
  }
  note = "congestion control " + config.loopback_cc + " for loopback connections: " + std::strerror(err) +
         "; they keep the system's";
  config.loopback_cc.clear();
  return true;
}

int serve(const cli::Config& given, int argc, const char* const* argv) {
  ignore_stray_signals();
  remember_invocation(argc, argv);
  raise_descriptor_limit();
  std::optional<Inheritance> inheritance = inherited();
  Failure failure;
  cli::Config config = given;  // the workers keep a reference to it until serve() returns
  std::string loopback_cc_note;
  std::vector<net::Fd> listeners;
  if (settle_cpus(config, failure) && settle_loopback_cc(config, failure, loopback_cc_note)) {
    listeners = open_listeners(config, inheritance, failure);
  }
  if (listeners.empty()) {
    std::fprintf(stderr, "%s\n", failure.message.c_str());
    if (inheritance) report_to_predecessor(*inheritance, failure);
    return failure.exit_code;
  }
  // Not an error: the address may come up later (a floating address); meanwhile every connect
  // fails, which only -d would say. Told where balance was started too, before it daemonizes.
  std::vector<std::string> bind_warnings;
  if (config.out_bind) {
    if (const int err = net::local_bind_error(*config.out_bind)) {
      bind_warnings.push_back("-B " + config.out_bind->host_string() + ": " + std::strerror(err) +
                              "; connections to the channels fail until it can be used");
    }
    if (std::string w = out_bind_family_warning(config); !w.empty()) bind_warnings.push_back(std::move(w));
    if (!config.foreground && !inheritance) {
      for (const std::string& w : bind_warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    }
  }
  StartupReport report;
  if (!config.foreground && !inheritance) {  // an upgraded master is a daemon already
    if (auto parent_exit = report.daemonize()) return *parent_exit;
  }
  // Starts the logger thread: after the fork above (a thread does not survive one), before any
  // other thread (they all log through it, never waiting for the sink).
  log::init(!config.foreground, config.debug);
  for (const std::string& w : bind_warnings) log::write(log::Level::Warning, "%s", w.c_str());
  if (!loopback_cc_note.empty()) BALANCE_DEBUG("%s", loopback_cc_note.c_str());
  // A start that fails from here on says why where it was started from: on the terminal (after
  // what was logged before it), to the parent that daemonized, to the master being upgraded.
  const auto failed = [&] {
    log::flush();
    if (config.foreground) std::fprintf(stderr, "%s\n", failure.message.c_str());
    report.send(failure);
    if (inheritance) report_to_predecessor(*inheritance, failure);
    return failure.exit_code;
  };

  auto segment = open_segment(config, inheritance, failure);
  if (!segment) return failed();
  Proxy proxy(config, std::move(listeners), std::move(segment));
  net::Fd inherited_metrics = inheritance ? std::move(inheritance->metrics) : net::Fd();
  if (!proxy.start_metrics(std::move(inherited_metrics), failure) || !proxy.start(failure)) {
    if (!inheritance) proxy.discard_segment();  // an upgrade's predecessor goes on serving from it
    return failed();
  }
  report.send(std::nullopt);
  if (inheritance) {
    report_to_predecessor(*inheritance, std::nullopt);  // the predecessor tells systemd (upgrade())
  } else {
    sd_notifyf(0, "READY=1\nSTATUS=%s", proxy.serving_status().c_str());
  }
  proxy.run();
  return kExitOk;
}

}  // namespace balance::master
