"""--cpus: each worker thread pinned to one CPU, and each worker's listener steered to the
connections whose SYN that CPU processed (SO_INCOMING_CPU); without it, one worker per CPU the
process may run on (its affinity mask), none pinned. Read from outside: the threads' masks in
/proc/PID/task/*/status, the listeners' SO_INCOMING_CPU on copies of balance's descriptors
(pidfd_getfd)."""

import ctypes
import os
import socket

import pytest

import harness as h

SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)
SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 alike


def allowed_cpus() -> list:
    return sorted(os.sched_getaffinity(0))


def threads(pid: int) -> dict:
    """{thread name: CPU list of its affinity mask}, e.g. {"worker 0": "1", "logger": "0-1"}."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            mask = next(line.split(":", 1)[1].strip() for line in f if line.startswith("Cpus_allowed_list:"))
        out[name] = mask
    return out


def workers(pid: int) -> dict:
    return {name: mask for name, mask in threads(pid).items() if name.startswith("worker ")}


def listener_inodes(port: int) -> set:
    """The socket inodes of the TCP listeners on `port` (/proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
    return inodes


def listeners_incoming_cpus(pid: int, port: int) -> list:
    """SO_INCOMING_CPU of each of balance's listeners on `port`, read on a copy of its descriptor."""
    inodes = listener_inodes(port)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    cpus = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue
            if not (target.startswith("socket:[") and target[8:-1] in inodes):
                continue
            copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            assert copy >= 0, f"pidfd_getfd: {os.strerror(ctypes.get_errno())}"
            with socket.socket(fileno=copy) as s:
                cpus.append(s.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU))
    finally:
        os.close(pidfd)
    assert cpus, f"no listener of balance on port {port} found"
    return sorted(cpus)


def proxies(port: int) -> None:
    """Some connections through balance, each echoed whole: pinned workers still serve."""
    for i in range(8):
        with h.connect(port) as c:
            data = b"cpu %d " % i * 100
            c.sendall(data)
            assert h.recv_exact(c, len(data)) == data


@pytest.fixture
def two_cpus():
    cpus = allowed_cpus()
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    return cpus[:2]


def test_each_worker_on_its_cpu_in_the_order_given(start_balance, backends, two_cpus):
    """--cpus B,A: worker 0 on B and worker 1 on A, as many workers as CPUs; the other threads
    (the master, the logger) keep the mask balance was started with; each listener names the
    CPU of one worker; connections are proxied."""
    a, b = two_cpus
    srv = backends(h.EchoServer())
    bal = start_balance(h.free_port(), [srv.address], opts=["-b", "127.0.0.1", "--cpus", f"{b},{a}"])
    assert workers(bal.pid) == {"worker 0": str(b), "worker 1": str(a)}
    others = {name: mask for name, mask in threads(bal.pid).items() if not name.startswith("worker ")}
    assert others and set(others.values()) == {cpu_list_text(allowed_cpus())}, others
    assert listeners_incoming_cpus(bal.pid, bal.port) == sorted([a, b])
    proxies(bal.port)


def test_all_pins_one_worker_to_each_cpu_balance_may_use(start_balance, backends):
    srv = backends(h.EchoServer())
    cpus = allowed_cpus()
    bal = start_balance(h.free_port(), [srv.address], opts=["-b", "127.0.0.1", "--cpus", "all"])
    assert workers(bal.pid) == {f"worker {i}": str(cpu) for i, cpu in enumerate(cpus)}
    assert listeners_incoming_cpus(bal.pid, bal.port) == cpus
    proxies(bal.port)


def test_without_cpus_nothing_is_pinned_nor_steered(start_balance, backends):
    """The default: one worker per CPU, each free to run anywhere balance may; no listener
    names a CPU (-1), so the kernel spreads connections over the listeners by hash."""
    srv = backends(h.EchoServer())
    cpus = allowed_cpus()
    bal = start_balance(h.free_port(), [srv.address], opts=["-b", "127.0.0.1"])
    masks = workers(bal.pid)
    assert masks == {f"worker {i}": cpu_list_text(cpus) for i in range(len(cpus))}
    assert listeners_incoming_cpus(bal.pid, bal.port) == [-1] * len(cpus)


def test_default_worker_count_follows_the_affinity_mask(start_balance, backends):
    """Started on one CPU (taskset, systemd's CPUAffinity=, a cpuset), balance runs one worker,
    not one per CPU of the machine."""
    srv = backends(h.EchoServer())
    before = os.sched_getaffinity(0)
    one = min(before)
    os.sched_setaffinity(0, {one})  # the child inherits it
    try:
        bal = start_balance(h.free_port(), [srv.address], opts=["-b", "127.0.0.1"])
    finally:
        os.sched_setaffinity(0, before)
    assert workers(bal.pid) == {"worker 0": str(one)}
    proxies(bal.port)


def test_a_cpu_balance_may_not_use_is_refused(rundir):
    """A CPU outside the affinity mask: one line, exit 64 (EX_USAGE), nothing started."""
    cpus = allowed_cpus()
    missing = next(c for c in range(1024) if c not in cpus)
    r = h.run(["-f", "-b", "127.0.0.1", "--cpus", f"{cpus[0]},{missing}", str(h.free_port()), "127.0.0.1:9"],
              rundir=rundir)
    assert r.rc == 64, r
    assert r.stderr == (f"cannot pin a worker to CPU {missing} (--cpus): balance may run on "
                        f"{cpu_list_text(cpus)} only, exiting.\n"), r.stderr


def test_all_with_another_thread_count_is_refused(rundir):
    cpus = allowed_cpus()
    r = h.run(["-f", "-b", "127.0.0.1", "--cpus", "all", "--threads", str(len(cpus) + 1), str(h.free_port()),
               "127.0.0.1:9"], rundir=rundir)
    assert r.rc == 64, r
    assert r.stderr == (f"--threads {len(cpus) + 1} and --cpus all ({len(cpus)} CPUs: {cpu_list_text(cpus)}) "
                        f"disagree (one worker per CPU), exiting.\n"), r.stderr


def cpu_list_text(cpus) -> str:
    """The kernel's way: runs of consecutive CPUs as ranges, "0-3,8"."""
    parts, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)
