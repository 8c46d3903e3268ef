// kernel_costs: what entering the kernel and switching tasks cost on this machine, the two prices
// behind every technique of docs/PERFORMANCE.md (a syscall saved, a wake-up or a preemption
// avoided). Prints three lines:
//   - a syscall that does nothing (getppid), in ns;
//   - a round trip through two pipes between two processes on the same CPU (two context
//     switches, four syscalls), in µs;
//   - the same round trip with the processes on two CPUs (two cross-CPU wake-ups), in µs.
//
// usage: kernel_costs [ROUNDS]   (default 200000; each line takes about ROUNDS x its cost)

#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// Parent on `cpu_a`, child on `cpu_b`; one byte goes there and back `rounds` times.
// Returns µs per round trip, or a negative value when the processes could not be set up.
double ping_pong(int cpu_a, int cpu_b, long rounds) {
  int there[2], back[2];
  if (pipe(there) != 0 || pipe(back) != 0) return -1;
  const pid_t child = fork();
  if (child < 0) return -1;
  char byte = 'x';
  if (child == 0) {
    if (!pin(cpu_b)) _exit(1);
    for (long i = 0; i < rounds; ++i) {
      if (read(there[0], &byte, 1) != 1 || write(back[1], &byte, 1) != 1) _exit(1);
    }
    _exit(0);
  }
  double us = -1;
  if (pin(cpu_a)) {
    const auto start = Clock::now();
    long i = 0;
    for (; i < rounds; ++i) {
      if (write(there[1], &byte, 1) != 1 || read(back[0], &byte, 1) != 1) break;
    }
    if (i == rounds) us = ns_since(start) / 1000.0 / static_cast<double>(rounds);
  }
  for (int fd : {there[0], there[1], back[0], back[1]}) close(fd);  // a stuck child reads EOF
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? us : -1;
}

}  // namespace

int main(int argc, char** argv) {
  const long rounds = argc > 1 ? std::atol(argv[1]) : 200000;
  if (rounds <= 0 || rounds > 100000000) {
    std::fprintf(stderr, "usage: kernel_costs [ROUNDS]  (1 to 100000000)\n");
    return 2;
  }
  const auto start = Clock::now();
  for (long i = 0; i < rounds * 10; ++i) syscall(SYS_getppid);
  std::printf("syscall (getppid): %.0f ns\n", ns_since(start) / static_cast<double>(rounds * 10));
  const double same = ping_pong(0, 0, rounds);
  const double cross = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? ping_pong(0, 1, rounds) : -1;
  if (same < 0) {
    std::fprintf(stderr, "kernel_costs: cannot run two pinned processes here\n");
    return 1;
  }
  std::printf("pipe round trip, one CPU: %.2f us\n", same);
  if (cross >= 0) std::printf("pipe round trip, two CPUs: %.2f us\n", cross);
  return 0;
}
