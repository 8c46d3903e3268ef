#include "master/master.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <thread>
#include <vector>

#include "ctl/segment.h"
#include "log/log.h"
#include "master/daemon.h"
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

// Blocks the stop signals in this thread and every thread it starts; the master waits for them.
sigset_t block_stop_signals() {
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
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
  BALANCE_DEBUG("listening on %s port %u, %u worker threads, connect timeout %us, idle timeout %us",
                config.bind ? config.bind->address_string().c_str() : "all addresses", config.port, threads,
                config.connect_timeout_s, config.idle_timeout_s);
  for (size_t g = 0; g < config.groups.size(); ++g) {
    const auto& group = config.groups[g];
    for (size_t c = 0; c < group.channels.size(); ++c) {
      BALANCE_DEBUG("group %zu (%s) channel %zu: %s maxc %u", g,
                    group.type == core::GroupType::Hash ? "hash" : "round robin", c,
                    group.channels[c].endpoint.to_string().c_str(), group.channels[c].maxc);
    }
  }
}

// Waits for a stop signal (SIGHUP is ignored: there is no configuration file to reread).
void wait_for_stop(const sigset_t& set) {
  for (;;) {
    siginfo_t info;
    const int sig = ::sigwaitinfo(&set, &info);
    if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
      log::write(log::Level::Notice, "signal %d received, shutting down", sig);
      return;
    }
  }
}

}  // namespace

int serve(const cli::Config& config) {
  raise_descriptor_limit();
  Failure failure;
  net::Fd listener = net::make_listener({config.bind, config.port, config.force_ipv6}, failure);
  if (!listener) {
    std::fprintf(stderr, "%s\n", failure.message.c_str());
    return failure.exit_code;
  }
  StartupReport report;
  if (!config.foreground) {
    if (auto parent_exit = report.daemonize()) return *parent_exit;
  }
  log::init(!config.foreground, config.debug);

  auto segment = ctl::Segment::create({config.port, config.bind_text, config.use_mmap}, failure);
  if (!segment) {
    if (config.foreground) std::fprintf(stderr, "%s\n", failure.message.c_str());
    report.send(failure);
    return failure.exit_code;
  }
  core::Table& table = segment->table();
  fill_table(table, config);
  const unsigned threads = config.threads ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  table.header.threads.store(threads);
  trace_config(config, threads);

  const sigset_t stop_signals = block_stop_signals();
  // -p writes to the terminal; a daemon has none, so it never dumps.
  const net::WorkerShared shared{config, table, listener.get(), config.packet_dump && config.foreground};
  std::vector<std::unique_ptr<net::Worker>> workers;
  for (unsigned i = 0; i < threads; ++i) {
    workers.push_back(std::make_unique<net::Worker>(shared, i));
    workers.back()->start();
  }
  report.send(std::nullopt);

  wait_for_stop(stop_signals);
  for (auto& w : workers) w->stop_and_join();
  segment->unlink();
  return kExitOk;
}

}  // namespace balance::master
