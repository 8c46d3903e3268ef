#include "master/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

#include "core/signals.h"
#include "log/log.h"

namespace balance::master {

void ignore_stray_signals() {
  core::for_each_stray_signal([](int sig) { ::signal(sig, SIG_IGN); });
}

Supervisor::Supervisor(bool foreground) : foreground_(foreground) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR2}) sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

Event Supervisor::wait(int timeout_ms) {
  pollfd fds[2] = {{signal_fd_.get(), POLLIN, 0}, {event_fd_.get(), POLLIN, 0}};
  const int n = ::poll(fds, 2, timeout_ms);
  if (n == 0) return Event::Timeout;
  if (n < 0) return errno == EINTR ? Event::Workers : Event::Timeout;
  if (fds[1].revents & POLLIN) {
    uint64_t count;
    while (::read(event_fd_.get(), &count, sizeof count) > 0) {
    }
    return Event::Workers;
  }
  signalfd_siginfo info;
  if (::read(signal_fd_.get(), &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return Event::Workers;
  const int sig = static_cast<int>(info.ssi_signo);
  switch (sig) {
    case SIGUSR2:
      return Event::Upgrade;
    case SIGHUP:
      return Event::Workers;  // nothing to reload: the caller just waits again
    default:
      const bool now = stopping_ || (sig == SIGINT && foreground_);
      log::write(log::Level::Notice, "signal %d received, %s", sig, now ? "stopping now" : "shutting down");
      if (now) return Event::StopNow;
      stopping_ = true;
      return Event::Stop;
  }
}

void Supervisor::notify() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(event_fd_.get(), &one, sizeof one);
}

std::function<void()> Supervisor::stopped_accepting_callback() {
  return [this] {
    stopped_accepting_.fetch_add(1);
    notify();
  };
}

std::function<void()> Supervisor::drained_callback() {
  return [this] {
    drained_.fetch_add(1);
    notify();
  };
}

}  // namespace balance::master
