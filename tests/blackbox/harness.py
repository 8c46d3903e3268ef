"""Black-box test harness for balance: the real binary against real backends on loopback.

Standard library only. Everything here is bounded in time: every wait has a deadline, every
server loop stops when closed, every subprocess has a timeout.

Public API (stable; test_control_*.py imports it):

  Configuration
    BALANCE_BIN         path of the binary under test ($BALANCE_BIN, default <repo>/build/balance)
    REPO_ROOT           the repository root
    SANITIZED           True when $BALANCE_SANITIZE is non-empty (ASan/UBSan/TSan build)
    SCALE               multiplier applied to every deadline (3 when sanitized; $BALANCE_TIMEOUT_SCALE)
    scaled(seconds)     seconds * SCALE
    wait_for(pred, timeout, what)   poll pred() until truthy; AssertionError naming `what` if not

  Ports and processes
    free_port()         a TCP port below the ephemeral range, free for IPv4 and IPv6 (never listened on)
    closed_port()       alias of free_port(): a port where a connect is refused
    have_ipv6()         True if ::1 is usable
    Balance(...)        the program in the foreground (-f); see its docstring
    run(args, ...)      one-shot invocation -> Result(rc, stdout, stderr)
    ctl(port, cmd, ...) run(["-c", cmd, str(port)]) against an instance
    fd_count(pid), socket_inodes(pid), tcp_sockets(pid), listening_pids(port)
    assert_no_sanitizer_report(text, where)

  Backends (threads on loopback; all have .port, .host, .close() and `with` support)
    NameServer(name)    on accept sends name + "\\n", then echoes
    EchoServer()        echoes (optionally resets after N bytes)
    SinkServer()        reads everything, records sha256/count; optional reply of random bytes
    OobEchoServer()     echoes ordinary data as ordinary data and urgent bytes as urgent bytes
    BlackholeServer()   a listener whose accept queue is full: SYNs are never answered
    PortHolder()        a plain listener that never accepts (to occupy a port)

  Client helpers
    connect(port, family, host, timeout), recv_exact, recv_until, recv_until_eof,
    ask_name, expect_closed, send_urgent, UrgentReader, set_linger_reset
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BALANCE_BIN = os.environ.get("BALANCE_BIN") or os.path.join(REPO_ROOT, "build", "balance")
SANITIZED = bool(os.environ.get("BALANCE_SANITIZE", "").strip())


def built_binary(env: str, name: str, hint: str = "") -> str:
    """The path of a program the build makes, for a fixture: $env if set (a missing one fails
    the test), else build/<name> (a missing one skips it; `hint` says why it may be missing)."""
    import pytest  # only fixtures call this
    path = os.environ.get(env) or os.path.join(REPO_ROOT, "build", name)
    if not os.access(path, os.X_OK):
        if os.environ.get(env):
            pytest.fail(f"{env}={path} is not an executable", pytrace=False)
        pytest.skip(f"{name} not built at {path}{hint}")
    return path


SCALE = float(os.environ.get("BALANCE_TIMEOUT_SCALE") or (3.0 if SANITIZED else 1.0))

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
)

# Signals that mean the program crashed rather than stopped.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


def scaled(seconds: float) -> float:
    """A deadline in seconds, stretched for sanitizer builds."""
    return seconds * SCALE


def wait_for(pred: Callable[[], object], timeout: float, what: str = "condition",
             interval: float = 0.02):
    """Polls pred() until it returns a truthy value, which is returned.

    `timeout` is in unscaled seconds (scaled() is applied here). Raises AssertionError
    mentioning `what` (and the last value seen) when the deadline passes.
    """
    deadline = time.monotonic() + scaled(timeout)
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {scaled(timeout):.1f}s waiting for {what} "
                                 f"(last value: {last!r})")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def assert_no_sanitizer_report(text: str, where: str = "stderr") -> None:
    """Fails if `text` contains an ASan/LSan/UBSan/TSan report."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            raise AssertionError(f"sanitizer report in {where}:\n{text[-8000:]}")


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

_ipv6_cache: Optional[bool] = None


def have_ipv6() -> bool:
    """True if an IPv6 socket can be bound on ::1."""
    global _ipv6_cache
    if _ipv6_cache is None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", 0))
            _ipv6_cache = True
        except OSError:
            _ipv6_cache = False
    return _ipv6_cache


_port_cursor: Optional[int] = None

# Ports handed out by free_port() lie below the kernel's ephemeral range, where no outgoing
# connection and no bind to port 0 (the helper servers' listeners) can take one between the
# moment it is given and the moment balance binds it, or while a test holds it as closed.
PORTS_FROM = 10000


@functools.cache
def _port_block() -> tuple:
    """The ports [first, end) this process may hand out (read once). ctest runs the black-box files side by
    side, each told its share by BALANCE_TEST_PORT_SHARD=i/n: block i of n equal blocks of the
    range below the ephemeral ports, so two files never hand out the same port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            end = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        end = 32768
    shard = os.environ.get("BALANCE_TEST_PORT_SHARD", "")
    m = re.fullmatch(r"(\d+)/(\d+)", shard)
    if shard and not (m and int(m.group(1)) < int(m.group(2))):
        raise AssertionError(f"BALANCE_TEST_PORT_SHARD={shard!r}: expected i/n with i < n")
    index, count = (int(m.group(1)), int(m.group(2))) if m else (0, 1)
    size = (end - PORTS_FROM) // count
    if size < 64:
        raise AssertionError(f"{size} ports per shard below {end}: too few for the tests")
    return PORTS_FROM + index * size, PORTS_FROM + (index + 1) * size


def _port_bindable(port: int) -> bool:
    """True if nothing holds `port` on any address, IPv4 and (where usable) IPv6."""
    family, host = (socket.AF_INET6, "::") if have_ipv6() else (socket.AF_INET, "0.0.0.0")
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port currently free for IPv4 and IPv6 on all addresses, and never given before in
    this run (the ports are taken in order from this process's block below the ephemeral range,
    see _port_block): a port one test holds as closed (see closed_port) is not given to another
    to listen on.

    The port was never listened on, so until someone binds it a connect to it is refused.
    """
    global _port_cursor
    first, end = _port_block()
    if _port_cursor is None:
        _port_cursor = first
    while _port_cursor < end:
        port = _port_cursor
        _port_cursor += 1
        if _port_bindable(port):
            return port
    raise AssertionError(f"no TCP port left in {first}-{end - 1} that this run has not given out")


def closed_port() -> int:
    """A port nobody listens on: connecting to it is refused (see free_port)."""
    return free_port()


# --------------------------------------------------------------------------------------------
# /proc inspection
# --------------------------------------------------------------------------------------------

TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}


@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/net/tcp{,6}."""
    family: int
    local: tuple  # (address text, port)
    remote: tuple
    state: str    # e.g. "LISTEN", "ESTABLISHED"
    inode: int


def _decode_addr(hexaddr: str, family: int) -> tuple:
    addr, port = hexaddr.split(":")
    raw = bytes.fromhex(addr)
    if family == socket.AF_INET:
        text = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        # Four host-endian 32-bit words.
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        text = socket.inet_ntop(socket.AF_INET6, b"".join(words))
    return text, int(port, 16)


def tcp_table() -> List[TcpSocket]:
    """All TCP sockets of this network namespace (IPv4 and IPv6)."""
    rows = []
    for path, fam in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            rows.append(TcpSocket(fam, _decode_addr(parts[1], fam), _decode_addr(parts[2], fam),
                                  TCP_STATES.get(parts[3], parts[3]), int(parts[9])))
    return rows


def socket_inodes(pid: int) -> set:
    """Inodes of the sockets the process holds open (empty if it is gone)."""
    inodes = set()
    fddir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fddir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(fddir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def fd_count(pid: int) -> int:
    """Number of open file descriptors of the process (via /proc/PID/fd); -1 if it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def tcp_sockets(pid: int) -> List[TcpSocket]:
    """The TCP sockets held by the process, with their states."""
    inodes = socket_inodes(pid)
    return [s for s in tcp_table() if s.inode in inodes and s.inode != 0]


def socket_table(port: int) -> str:
    """The kernel's TCP sockets from or to `port` on this host, as `ss -tanoi` shows them (timers
    and TCP details included): for the message of a failed assertion."""
    query = f"( sport = :{port} or dport = :{port} )"
    return subprocess.run(["ss", "-tanoi", query], capture_output=True, text=True, timeout=10).stdout


def socket_states(pid: int) -> List[str]:
    """The TCP states of the process's sockets, e.g. ["LISTEN", "ESTABLISHED"]."""
    return [s.state for s in tcp_sockets(pid)]


def listening_pids(port: int) -> List[int]:
    """Pids of the processes holding a socket that LISTENs on `port` (any address)."""
    inodes = {s.inode for s in tcp_table() if s.state == "LISTEN" and s.local[1] == port}
    if not inodes:
        return []
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit() and socket_inodes(int(name)) & inodes:
            pids.append(int(name))
    return pids


def is_listening(pid: int, port: int, address: Optional[str] = None) -> bool:
    """True if the process holds a LISTEN socket on `port` (and `address`, if given)."""
    for s in tcp_sockets(pid):
        if s.state == "LISTEN" and s.local[1] == port and (address is None or s.local[0] == address):
            return True
    return False


def segment_path(port: int, rundir: str, mmap: bool) -> str:
    """Where the instance on `port` keeps its control segment: POSIX shm, or under the rundir (-M)."""
    return os.path.join(rundir, f"balance.{port}") if mmap else f"/dev/shm/balance.{port}"


def thread_names(pid: int) -> dict:
    """{thread id: name} of the process's threads (balance names them: "worker 0", "health checks",
    "logger", "metrics"); empty once the process is gone."""
    names = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return names
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names[int(tid)] = f.read().strip()
        except OSError:
            continue  # the thread ended meanwhile
    return names


def pid_alive(pid: int) -> bool:
    """True if the pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --------------------------------------------------------------------------------------------
# Running the program
# --------------------------------------------------------------------------------------------

@dataclass
class Result:
    """Outcome of a one-shot invocation."""
    rc: int
    stdout: str
    stderr: str

    def __iter__(self):  # allows: rc, out, err = run(...)
        return iter((self.rc, self.stdout, self.stderr))


def _env(rundir: Optional[str], extra: Optional[dict]) -> dict:
    env = dict(os.environ)
    if rundir is not None:
        env["BALANCE_RUNDIR"] = rundir
    if extra:
        env.update(extra)
    return env


def run(args: Sequence[str], timeout: float = 20, rundir: Optional[str] = None,
        env: Optional[dict] = None, stdin_data: Optional[bytes] = None,
        check_sanitizer: bool = True) -> Result:
    """Runs `balance ARGS` to completion and returns Result(rc, stdout, stderr).

    stdin is closed (or carries `stdin_data`); stdout and stderr go to temporary files, not
    pipes, so a daemon child that keeps them open cannot make this hang. `timeout` (scaled)
    bounds the run: the process group is killed and AssertionError raised if it is exceeded.
    BALANCE_RUNDIR is set to `rundir` when given.
    """
    cmd = [BALANCE_BIN] + [str(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, env=_env(rundir, env),
                                start_new_session=True)
        try:
            if stdin_data is not None:
                try:  # the program may exit without reading its input (e.g. no master)
                    proc.stdin.write(stdin_data)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            rc = proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait(timeout=10)
            out.seek(0)
            err.seek(0)
            raise AssertionError(f"{cmd} did not finish within {scaled(timeout):.0f}s; "
                                 f"stdout={out.read()[-2000:]!r} stderr={err.read()[-2000:]!r}")
        out.seek(0)
        err.seek(0)
        result = Result(rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"))
    if check_sanitizer:
        assert_no_sanitizer_report(result.stderr, f"stderr of {cmd}")
    return result


def ctl(port: int, cmd: str, rundir: Optional[str] = None, extra_args: Sequence[str] = (),
        timeout: float = 20) -> Result:
    """Runs `balance [EXTRA_ARGS] -c CMD PORT` (a control command against a running instance)."""
    return run(list(extra_args) + ["-c", cmd, str(port)], timeout=timeout, rundir=rundir)


class ReadyListener:
    """A NOTIFY_SOCKET (abstract unix datagram socket) on which Balance.start() hears READY=1.

    Listening is not being set up: balance binds its listeners first, then opens its control
    segment and starts its logger, --metrics server and worker threads (event loops, spare
    descriptors); it says READY=1 once it has started them all. A descriptor baseline taken in
    between missed the descriptors that came after, so a test waiting for the count to come
    back to it waited in vain (ASan build next to two CPU hogs: 16 starts in 40 counted short at
    "listening", 0 in 40 at READY=1). Closed once start() returns: what balance sends later (an upgrade's messages) is
    refused, which it ignores.
    """

    _serial = 0

    def __init__(self):
        ReadyListener._serial += 1
        name = f"balance-bb-{os.getpid()}-{ReadyListener._serial}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name)
        self.sock.setblocking(False)
        self.address = "@" + name
        self._ready = False

    def ready(self) -> bool:
        """True once READY=1 has arrived (from anyone: the socket is this instance's alone)."""
        while not self._ready:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            self._ready = "READY=1" in data.decode(errors="replace").splitlines()
        return self._ready

    def close(self) -> None:
        self.sock.close()


class Balance:
    """The program under test, started in the foreground: `balance -f OPTS PORT CHANNELS...`.

        with Balance(port, ["127.0.0.1:%d" % a.port, "127.0.0.1:%d" % b.port], opts=["-t", "1"]) as b:
            ...

    `args` (when given instead of `channels`) is the complete argument list after `-f`, for
    unusual command lines; then `port` is only used to wait for the listener. `flags` replaces
    the leading "-f" (e.g. "-fp"); it must keep the program in the foreground.
    `listen_address` (e.g. "::1") makes start() wait for a listener on that exact address.
    The environment gets BALANCE_RUNDIR=<rundir> (a fresh temp dir unless given), stdout and
    stderr go to files in that dir. start() (called by the constructor unless start=False)
    waits until the process holds a LISTEN socket on `port` (read from /proc/net/tcp{,6}; it
    never connects, so the round-robin cursor is untouched) and, unless `env` brings a
    NOTIFY_SOCKET of its own, has said READY=1 on one the harness gives it; if the process
    exits first or the deadline passes, it raises AssertionError with the captured stderr.
    stop() sends SIGTERM, waits, falls back to SIGKILL and returns the exit code. close()
    (used by `with` and the conftest fixture) stops it and asserts no crash and no sanitizer report.
    """

    def __init__(self, port: int, channels: Sequence[str] = (), opts: Sequence[str] = (),
                 args: Optional[Sequence[str]] = None, rundir: Optional[str] = None,
                 listen_address: Optional[str] = None, start: bool = True,
                 env: Optional[dict] = None, start_timeout: float = 15, flags: str = "-f"):
        self.port = port
        if args is None:
            args = [*opts, str(port), *channels]
        self.args = [str(a) for a in args]
        self.cmd = [BALANCE_BIN, flags] + self.args
        self._own_rundir = rundir is None
        self.rundir = rundir or tempfile.mkdtemp(prefix="balance-bb-")
        self.listen_address = listen_address
        self.env = env
        self.start_timeout = start_timeout
        self.stdout_path = os.path.join(self.rundir, f"stdout.{port}")
        self.stderr_path = os.path.join(self.rundir, f"stderr.{port}")
        self.proc: Optional[subprocess.Popen] = None
        self.rc: Optional[int] = None
        self.killed = False
        if start:
            self.start()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> "Balance":
        """Launches the process and waits (bounded) until it listens on self.port and has said
        READY=1 (see ReadyListener): set up, so that a descriptor count taken now is its
        baseline."""
        env = dict(self.env or {})
        ready = None
        if "NOTIFY_SOCKET" not in env and "BALANCE_UPGRADE" not in env:
            ready = ReadyListener()
            env["NOTIFY_SOCKET"] = ready.address
        try:
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                             env=_env(self.rundir, env), start_new_session=True)
            deadline = time.monotonic() + scaled(self.start_timeout)
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.cmd} exited with {self.proc.returncode} before "
                                         f"listening; stderr:\n{self.stderr()}")
                if (ready is None or ready.ready()) and \
                        is_listening(self.proc.pid, self.port, self.listen_address):
                    return self
                if time.monotonic() >= deadline:
                    err = self.stderr()
                    self.stop()
                    raise AssertionError(f"{self.cmd} not listening on port {self.port} (or no READY=1) "
                                         f"after {scaled(self.start_timeout):.0f}s; stderr:\n{err}")
                time.sleep(0.02)
        finally:
            if ready is not None:
                ready.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 10) -> Optional[int]:
        """Waits (scaled) for the process to exit by itself; returns its code or None."""
        try:
            self.rc = self.proc.wait(timeout=scaled(timeout))
            return self.rc
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, wait up to `timeout` (scaled), then SIGKILL. Returns the exit code
        (negative: killed by that signal). Idempotent."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=scaled(timeout))
            except subprocess.TimeoutExpired:
                self.killed = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    self.proc.kill()
                self.proc.wait(timeout=10)
        self.rc = self.proc.returncode
        return self.rc

    def close(self) -> None:
        """Stops the process and checks it stopped cleanly: it honoured SIGTERM, did not crash,
        and printed no sanitizer report."""
        rc = self.stop()
        err = self.stderr()
        assert_no_sanitizer_report(err, f"stderr of {self.cmd}")
        if self.killed:
            raise AssertionError(f"{self.cmd} ignored SIGTERM and had to be killed; stderr:\n{err[-4000:]}")
        if rc is not None and rc < 0 and -rc in CRASH_SIGNALS:
            raise AssertionError(f"{self.cmd} crashed with signal {-rc}; stderr:\n{err[-4000:]}")

    def __enter__(self) -> "Balance":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            try:
                self.close()
            except AssertionError:
                pass  # the original failure is more interesting

    # -- observation --------------------------------------------------------------------------

    def stdout(self) -> str:
        """Everything the process wrote on stdout so far."""
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stdout_bytes(self) -> bytes:
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def stderr(self) -> str:
        """Everything the process wrote on stderr so far."""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def fd_count(self) -> int:
        """Open descriptors of the process."""
        return fd_count(self.pid)

    def sockets(self) -> List[TcpSocket]:
        """TCP sockets of the process."""
        return tcp_sockets(self.pid)

    def connections(self) -> List[TcpSocket]:
        """Non-listening TCP sockets of the process."""
        return [s for s in self.sockets() if s.state != "LISTEN"]

    def wait_no_connections(self, timeout: float = 15) -> None:
        """Waits until the process holds no TCP socket other than listeners (every client
        and backend connection it had is closed)."""
        wait_for(lambda: not self.connections(), timeout,
                 f"balance (pid {self.pid}) to close all its connections")

    def wait_fd_count(self, n: int, timeout: float = 15) -> None:
        """Waits until the process has exactly n open descriptors (e.g. back to a baseline)."""
        try:
            wait_for(lambda: self.fd_count() == n, timeout, f"balance fd count to return to {n}")
        except AssertionError as e:
            raise AssertionError(f"{e}; now {self.fd_count()} fds, sockets: {self.sockets()}") from None

    def ctl(self, cmd: str, timeout: float = 20) -> Result:
        """`balance [-b addr] -c CMD PORT` against this instance (same BALANCE_RUNDIR)."""
        extra = []
        if "-b" in self.args:
            i = self.args.index("-b")
            extra = ["-b", self.args[i + 1]]
        return ctl(self.port, cmd, rundir=self.rundir, extra_args=extra, timeout=timeout)

    def run(self, args: Sequence[str], timeout: float = 20) -> Result:
        """run() with this instance's BALANCE_RUNDIR."""
        return run(args, timeout=timeout, rundir=self.rundir)

    def connect(self, family: int = socket.AF_INET, host: Optional[str] = None,
                timeout: float = 10) -> socket.socket:
        """A client connection to this instance."""
        return connect(self.port, family, host, timeout)


# --------------------------------------------------------------------------------------------
# Client helpers
# --------------------------------------------------------------------------------------------

def loopback(family: int) -> str:
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def connect(port: int, family: int = socket.AF_INET, host: Optional[str] = None,
            timeout: float = 10) -> socket.socket:
    """A blocking TCP connection to host:port (loopback of `family` by default).

    The socket's timeout is set to `timeout` (scaled), so any later blocking call is bounded.
    """
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    try:
        s.connect((host or loopback(family), port))
    except BaseException:
        s.close()
        raise
    return s


def recv_exact(sock: socket.socket, n: int, timeout: float = 10) -> bytes:
    """Exactly n bytes, or AssertionError on EOF or after `timeout` (scaled) seconds."""
    deadline = time.monotonic() + scaled(timeout)
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out: got {len(buf)} of {n} bytes: {bytes(buf[:200])!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes: {bytes(buf[:200])!r}")
        buf += chunk
    return bytes(buf)


def recv_until(sock: socket.socket, terminator: bytes = b"\n", timeout: float = 10) -> bytes:
    """Bytes up to and including `terminator` (reads one byte at a time past nothing).

    AssertionError on EOF or timeout.
    """
    deadline = time.monotonic() + scaled(timeout)
    buf = bytearray()
    while not buf.endswith(terminator):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {terminator!r}; got {bytes(buf)!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1)
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError(f"EOF before {terminator!r}; got {bytes(buf)!r}")
        buf += chunk
    return bytes(buf)


def ask_name(port: int, family: int = socket.AF_INET, host: Optional[str] = None,
             timeout: float = 10) -> str:
    """Connects to `port`, reads the NameServer greeting line and returns the name
    (the connection is then closed). AssertionError if the connection ends first."""
    with connect(port, family, host, timeout) as s:
        return recv_until(s, b"\n", timeout).decode().rstrip("\n")


def recv_until_eof(sock: socket.socket, timeout: float = 10, hasher=None,
                   keep: bool = True) -> bytes:
    """Everything until EOF (AssertionError after `timeout` scaled seconds).

    With `hasher` (e.g. hashlib.sha256()) each chunk is fed to it; with keep=False the data
    is not accumulated (returns b""). A connection reset propagates as ConnectionResetError.
    """
    deadline = time.monotonic() + scaled(timeout)
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for EOF; got {len(buf)} bytes")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 18)
        except socket.timeout:
            continue
        if not chunk:
            return bytes(buf)
        if hasher is not None:
            hasher.update(chunk)
        if keep:
            buf += chunk


def expect_closed(sock: socket.socket, timeout: float = 10) -> str:
    """Waits until the peer ends the connection; returns "eof" or "reset".

    Data still arriving before the end is discarded. AssertionError on timeout.
    """
    try:
        recv_until_eof(sock, timeout, keep=False)
        return "eof"
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return "reset"


def set_linger_reset(sock: socket.socket) -> None:
    """Makes close() send a RST instead of a FIN (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def set_keepalive(sock: socket.socket, idle_s: int) -> None:
    """TCP keepalive on `sock`: the first probe after `idle_s` idle seconds, then one a second,
    and the connection fails after three unanswered."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def send_urgent(sock: socket.socket, byte: bytes) -> None:
    """Sends one byte as TCP urgent (out-of-band) data."""
    assert len(byte) == 1
    sock.send(byte, socket.MSG_OOB)


SIOCATMARK = 0x8905


def at_mark(sock: socket.socket) -> bool:
    """sockatmark(): True if the read pointer is at the urgent mark."""
    buf = fcntl.ioctl(sock.fileno(), SIOCATMARK, struct.pack("i", 0))
    return struct.unpack("i", buf)[0] != 0


class UrgentReader:
    """Reads a socket (without SO_OOBINLINE) separating ordinary and urgent data.

    Urgent bytes are taken with recv(MSG_OOB) when select() reports an exceptional condition.
    `ordinary` accumulates the ordinary stream, `urgent` the urgent bytes in arrival order,
    `marks` the ordinary offset at which each urgent byte was read, `eof` the end of stream.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.ordinary = bytearray()
        self.urgent = bytearray()
        self.marks: List[int] = []
        self.eof = False

    def poll(self, timeout: float) -> None:
        """One select() round of at most `timeout` seconds (not scaled)."""
        s = self.sock
        r, _, x = select.select([s], [], [s], timeout)
        saved = s.gettimeout()
        # Non-blocking for the reads: with a timeout set, Python polls for POLLIN before recv(),
        # which never comes for urgent data alone.
        s.setblocking(False)
        try:
            self._read(r, x)
        finally:
            s.settimeout(saved)

    def _read(self, r, x) -> None:
        s = self.sock
        if x:
            try:
                b = s.recv(1, socket.MSG_OOB)
                if b:
                    self.urgent += b
                    self.marks.append(len(self.ordinary))
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: no urgent data pending (any more)
                    raise
        if r and not self.eof:
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            if chunk:
                self.ordinary += chunk
            else:
                self.eof = True
                if not x:
                    time.sleep(0.01)  # readable forever at EOF: avoid a busy loop

    def wait(self, pred: Callable[["UrgentReader"], bool], timeout: float = 10,
             what: str = "data") -> None:
        """Reads until pred(self) holds; AssertionError after `timeout` (scaled)."""
        deadline = time.monotonic() + scaled(timeout)
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}: ordinary={bytes(self.ordinary)[:200]!r} "
                                     f"urgent={bytes(self.urgent)!r} eof={self.eof}")
            self.poll(min(left, 0.2))


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

@dataclass
class ConnRecord:
    """What a backend saw on one accepted connection. Filled by the connection's thread.

    `ended` is set once the connection is over (EOF, reset or error, and our side done).
    `end` is "eof" (clean end of the peer's stream), "reset", "error:<text>" or "closed"
    (the server was closed first).
    """
    peer: tuple = ()
    received_bytes: int = 0
    received_sha256: str = ""
    sent_bytes: int = 0
    sent_sha256: str = ""
    received: bytearray = field(default_factory=bytearray)  # kept only up to keep_limit
    urgent: bytearray = field(default_factory=bytearray)    # urgent bytes (OobEchoServer)
    end: str = ""
    ended: threading.Event = field(default_factory=threading.Event)
    got_eof: threading.Event = field(default_factory=threading.Event)


class _Server:
    """Base: a listener on loopback with an accept thread and one thread per connection.

    Subclasses implement handle(conn, record). The listener is bound at construction
    (port 0 = ephemeral, or a given port); all threads stop on close(), which closes every
    socket and joins the threads (bounded).

    keepalive=N: accepted connections send TCP keepalive probes after N idle seconds, one a
    second, three at most, as a server guarding against half-open connections does: a probe to a
    peer socket that no longer exists is answered with a reset, one to a socket still open is
    acknowledged, so the connection ends only in the first case.
    """

    keep_limit = 1 << 20  # bytes of received data kept in ConnRecord.received

    def __init__(self, port: int = 0, family: int = socket.AF_INET, host: Optional[str] = None,
                 backlog: int = 64, io_timeout: float = 120, keepalive: Optional[int] = None):
        self.family = family
        self.keepalive = keepalive
        self.host = host or loopback(family)
        self.io_timeout = scaled(io_timeout)
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.host, port))
        self.listener.listen(backlog)
        self.listener.settimeout(0.1)  # the accept loop polls self._closed
        self.port = self.listener.getsockname()[1]
        self.records: List[ConnRecord] = []
        self._lock = threading.Lock()
        self._conns: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._closed = threading.Event()
        self._accepted = threading.Condition(self._lock)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"{type(self).__name__}:{self.port}")
        self._acceptor.start()

    @property
    def address(self) -> str:
        """The channel text for balance: 127.0.0.1:PORT or [::1]:PORT."""
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(0.05)
                continue
            conn.settimeout(self.io_timeout)
            if self.keepalive is not None:
                set_keepalive(conn, self.keepalive)
            rec = ConnRecord(peer=peer)
            t = threading.Thread(target=self._serve, args=(conn, rec), daemon=True)
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._conns.append(conn)
                self.records.append(rec)
                self._threads.append(t)
                self._accepted.notify_all()
            t.start()

    def _serve(self, conn: socket.socket, rec: ConnRecord) -> None:
        try:
            self.handle(conn, rec)
            if not rec.end:
                rec.end = "eof" if rec.got_eof.is_set() else "done"
        except (ConnectionResetError, BrokenPipeError):
            rec.end = "reset"
        except socket.timeout:
            rec.end = "error:timeout"
        except OSError as e:
            rec.end = "closed" if self._closed.is_set() else f"error:{e}"
        finally:
            try:
                conn.close()
            except OSError:
                pass
            rec.ended.set()

    def handle(self, conn: socket.socket, rec: ConnRecord) -> None:  # pragma: no cover
        raise NotImplementedError

    # Shared pieces for handlers.
    def _read_all(self, conn: socket.socket, rec: ConnRecord, hasher=None,
                  on_chunk: Optional[Callable[[bytes], None]] = None) -> None:
        """Reads until EOF, recording count, sha256 and (bounded) contents."""
        h = hasher or hashlib.sha256()
        while True:
            chunk = conn.recv(1 << 18)
            if not chunk:
                rec.got_eof.set()
                break
            h.update(chunk)
            rec.received_bytes += len(chunk)
            if len(rec.received) < self.keep_limit:
                rec.received += chunk[: self.keep_limit - len(rec.received)]
            if on_chunk:
                on_chunk(chunk)
        rec.received_sha256 = h.hexdigest()

    def connection_count(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self.records)

    def wait_connections(self, n: int, timeout: float = 10) -> List[ConnRecord]:
        """Waits (scaled) until at least n connections were accepted; returns the records."""
        deadline = time.monotonic() + scaled(timeout)
        with self._lock:
            while len(self.records) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__}:{self.port}: {len(self.records)} "
                                         f"connections accepted, expected {n}")
                self._accepted.wait(left)
            return list(self.records)

    def close(self) -> None:
        """Stops accepting, closes every connection, joins the threads (bounded)."""
        self._closed.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        self._acceptor.join(timeout=5)
        for t in threads:
            t.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EchoServer(_Server):
    """Echoes everything back; on EOF from the peer, shuts down writing and ends.

    With reset_after=N, once N or more bytes arrived on a connection it is closed with a RST
    (SO_LINGER 0), to simulate a backend failing mid-stream.
    """

    def __init__(self, port: int = 0, family: int = socket.AF_INET, reset_after: Optional[int] = None,
                 **kw):
        self.reset_after = reset_after
        super().__init__(port, family, **kw)

    def handle(self, conn, rec):
        h = hashlib.sha256()
        while True:
            chunk = conn.recv(1 << 18)
            if not chunk:
                rec.got_eof.set()
                rec.received_sha256 = h.hexdigest()
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            h.update(chunk)
            rec.received_bytes += len(chunk)
            if self.reset_after is not None and rec.received_bytes >= self.reset_after:
                set_linger_reset(conn)
                rec.end = "we-reset"
                return
            conn.sendall(chunk)
            rec.sent_bytes += len(chunk)


class NameServer(EchoServer):
    """On accept sends `name` followed by "\\n", then echoes (see EchoServer)."""

    def __init__(self, name: str, port: int = 0, family: int = socket.AF_INET, **kw):
        self.name = name
        super().__init__(port, family, **kw)

    def handle(self, conn, rec):
        conn.sendall(self.name.encode() + b"\n")
        super().handle(conn, rec)


def random_stream(total: int, hasher, chunk: int = 1 << 20):
    """Yields `total` random bytes (os.urandom) in chunks of at most `chunk`, feeding each to
    `hasher`, so no buffer of the whole size is ever held."""
    sent = 0
    while sent < total:
        data = os.urandom(min(chunk, total - sent))
        hasher.update(data)
        sent += len(data)
        yield data


class SinkServer(_Server):
    """Reads everything a connection sends, recording byte count and sha256.

    reply=N: also sends N random bytes of its own (their count and sha256 are recorded in
    sent_bytes/sent_sha256). reply_when="start": sent concurrently with reading, from accept;
    "eof": sent only after the peer's EOF. half_close=True with reply_when="start": after the
    reply, shut down writing and keep reading until EOF (a server-side half-close).
    Otherwise, after both directions are done, the connection is closed.
    """

    def __init__(self, port: int = 0, family: int = socket.AF_INET, reply: int = 0,
                 reply_when: str = "start", half_close: bool = False, **kw):
        assert reply_when in ("start", "eof")
        self.reply = reply
        self.reply_when = reply_when
        self.half_close = half_close
        super().__init__(port, family, **kw)

    def _send_reply(self, conn, rec):
        h = hashlib.sha256()
        for data in random_stream(self.reply, h):
            conn.sendall(data)
            rec.sent_bytes += len(data)
        rec.sent_sha256 = h.hexdigest()
        if self.half_close or self.reply_when == "eof":
            conn.shutdown(socket.SHUT_WR)

    def handle(self, conn, rec):
        if self.reply and self.reply_when == "start":
            errors = []

            def sender():
                try:
                    self._send_reply(conn, rec)
                except OSError as e:
                    errors.append(e)

            t = threading.Thread(target=sender, daemon=True)
            t.start()
            try:
                self._read_all(conn, rec)
            finally:
                t.join(timeout=self.io_timeout)
            if errors:
                raise errors[0]
        else:
            self._read_all(conn, rec)
            if self.reply:
                self._send_reply(conn, rec)
            else:
                rec.sent_sha256 = hashlib.sha256().hexdigest()


class OobEchoServer(_Server):
    """Echoes ordinary bytes as ordinary bytes and each urgent byte back as an urgent byte.

    Records the ordinary data in rec.received and urgent bytes in rec.urgent. With
    greet_urgent=b"Z" it first sends that byte as urgent data, right after accept.
    """

    def __init__(self, port: int = 0, family: int = socket.AF_INET,
                 greet_urgent: Optional[bytes] = None, **kw):
        self.greet_urgent = greet_urgent
        super().__init__(port, family, **kw)

    def handle(self, conn, rec):
        if self.greet_urgent:
            conn.send(self.greet_urgent, socket.MSG_OOB)
        reader = UrgentReader(conn)
        deadline = time.monotonic() + self.io_timeout
        while not reader.eof and not self._closed.is_set():
            if time.monotonic() > deadline:
                raise socket.timeout()
            n_ord, n_urg = len(reader.ordinary), len(reader.urgent)
            reader.poll(0.1)
            if len(reader.ordinary) > n_ord:
                new = bytes(reader.ordinary[n_ord:])
                rec.received += new
                rec.received_bytes += len(new)
                conn.sendall(new)
            if len(reader.urgent) > n_urg:
                for b in bytes(reader.urgent[n_urg:]):
                    rec.urgent.append(b)
                    conn.send(bytes([b]), socket.MSG_OOB)
        if reader.eof:
            rec.got_eof.set()


class PortHolder:
    """A listener that never accepts (occupies a port). Binds 0.0.0.0 (or ::, dual stack)."""

    def __init__(self, port: int = 0, family: int = socket.AF_INET, host: Optional[str] = None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BlackholeServer:
    """A listener (backlog 0, never accepting) whose accept queue is filled, so further
    SYNs are dropped and a connect to it neither succeeds nor is refused: it times out.

    The queue is filled with connections held open here; construction then verifies with a
    probe connect that the queue really is full (the probe must stay unanswered for
    `probe_time` seconds), else AssertionError. verify_full() repeats the probe.
    """

    def __init__(self, family: int = socket.AF_INET, probe_time: float = 0.5, max_fill: int = 32):
        self.family = family
        self.host = loopback(family)
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((self.host, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.held: List[socket.socket] = []
        self.probe_time = probe_time
        try:
            for _ in range(max_fill):
                s = self._try_connect(probe_time)
                if s is None:
                    break
                self.held.append(s)
            else:
                raise AssertionError("BlackholeServer: accept queue never filled")
            if not self.verify_full():
                raise AssertionError("BlackholeServer: probe connect was answered; queue not full")
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def _try_connect(self, wait: float) -> Optional[socket.socket]:
        """A non-blocking connect; the socket if it completed within `wait` s, else None."""
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((self.host, self.port))
        if rc == 0:
            return s
        if rc not in (errno.EINPROGRESS, errno.EAGAIN):
            s.close()
            raise AssertionError(f"BlackholeServer: connect failed: {os.strerror(rc)}")
        _, w, _ = select.select([], [s], [], wait)
        if w and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            return s
        s.close()
        return None

    def verify_full(self) -> bool:
        """True if a fresh connect stays unanswered for probe_time seconds."""
        s = self._try_connect(self.probe_time)
        if s is None:
            return True
        self.held.append(s)  # it got in after all; keep it so the queue stays full
        return False

    def close(self) -> None:
        for s in self.held:
            s.close()
        self.held = []
        self.listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------------------------

def project_version() -> str:
    """The version declared in CMakeLists.txt (project(balance VERSION x.y.z))."""
    with open(os.path.join(REPO_ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*balance\s+VERSION\s+([0-9.]+)", f.read())
    return m.group(1) if m else ""


def channel(port: int, host: str = "127.0.0.1", maxc: Optional[int] = None) -> str:
    """Channel text host:port[:maxc] (IPv6 hosts bracketed)."""
    h = f"[{host}]" if ":" in host else host
    return f"{h}:{port}" + (f":{maxc}" if maxc is not None else "")


def parse_show(text: str) -> List[dict]:
    """Parses `balance -c show` output rows into dicts with keys
    grp, type, ch, state, addr, port, c, totalc, maxc, sent, rcvd (ints where numeric), and
    weight (int) and health when the header has those columns (weights or --check in use).
    A row that does not have the header's columns fails the test: none is skipped."""
    rows = []
    extra: List[str] = []
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["GRP"]:
            extra = parts[11:]
            assert parts[:11] == ["GRP", "Type", "#", "S", "ip-address", "port", "c", "totalc", "maxc", "sent",
                                  "rcvd"] and set(extra) <= {"weight", "health"}, f"unknown show header: {line!r}"
            continue
        if not parts or not parts[0].isdigit():
            continue
        assert len(parts) == 11 + len(extra), f"show row without the header's {11 + len(extra)} columns: {line!r}"
        grp, typ, ch, st, addr, port, c, totalc, maxc, sent, rcvd = parts[:11]
        row = dict(grp=int(grp), type=typ, ch=int(ch), state=st, addr=addr, port=int(port), c=int(c),
                   totalc=int(totalc), maxc=int(maxc), sent=int(sent), rcvd=int(rcvd))
        for name, value in zip(extra, parts[11:]):
            row[name] = int(value) if name == "weight" else value
        rows.append(row)
    return rows
