// The signals that end a process by default and mean nothing to balance: the master and the
// control clients ignore them (balance(1), SIGNALS). A write past the file size limit then fails
// with EFBIG (SIGXFSZ), and one to a closed pipe with EPIPE (SIGPIPE). Pure: the caller acts.
#pragma once

#include <signal.h>

namespace balance::core {

template <typename F>
void for_each_stray_signal(F&& f) {
  for (int sig : {SIGPIPE, SIGUSR1, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT, SIGXFSZ}) f(sig);
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) f(sig);  // (those glibc leaves free)
}

}  // namespace balance::core
