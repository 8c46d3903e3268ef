"""Shared pieces of the fault and exhaustion tests (this module holds no tests).

  assert_settled(bal, baseline)   the after-case check: descriptors back to the baseline, no
                                  socket of balance in CLOSE_WAIT or FIN_WAIT2, every channel's
                                  `c` back to 0, the master alive
  Chatter(bal)                    control commands (show, disable, enable, maxc, mrtg) against
                                  balance over and over while a case runs; every one must answer
  exchange(port, n)               one client: n random bytes out, shutdown, the echo back;
                                  "served" or "closed" (only ever a prefix of what was sent)
  faulty backends                 ResetServer, NeverReadServer, PartialReplyServer, FlappingServer,
                                  KillableEchoServer (a separate process, for SIGKILL)
  /proc readings                  rss_kib(pid), cpu_seconds(pid), io_wchar(pid)
  figure(name, value)             records a measured figure (RSS growth, CPU...) in the JSON-lines
                                  file $BALANCE_RELIABILITY_FIGURES, when set (docs/RELIABILITY.md)
"""

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import harness as h

MiB = 1 << 20

# The spare channel every case puts in group 1: Chatter toggles it, so clients of group 0 are
# never steered by the chatter, yet the commands really change the table.
CHATTER_SCRIPT = "\n".join([
    "show", "group 1", "disable 0", "show", "enable 0", "maxc 0 7", "maxc 0 0", "group 0", "maxc 0 0",
    "mrtg-bytes 0 0", "mrtg-conns 0 0", "show", "quit"]) + "\n"


def figure(name: str, value) -> None:
    """Appends {"name": value} to $BALANCE_RELIABILITY_FIGURES (if set), for the reliability report."""
    path = os.environ.get("BALANCE_RELIABILITY_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({name: value}) + "\n")


# --------------------------------------------------------------------------------------------
# /proc readings
# --------------------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    """VmRSS of the process in KiB (from /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far, in seconds: the sum over its threads of the
    nanosecond run times in /proc/PID/task/*/schedstat (clock ticks of /proc/PID/stat are too
    coarse for a few seconds of near-idleness)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:  # the thread ended meanwhile
            continue
    return total / 1e9


def io_wchar(pid: int) -> int:
    """Bytes the process passed to write()-like calls so far (/proc/PID/io wchar; not send())."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError(f"no wchar for pid {pid}")


# --------------------------------------------------------------------------------------------
# The after-case check
# --------------------------------------------------------------------------------------------

def show_rows(bal):
    r = bal.ctl("show")
    assert r.rc == 0, r
    return h.parse_show(r.stdout)


def lingering_sockets(bal):
    """Sockets of balance half-way closed: CLOSE_WAIT (the peer ended, balance did not) or
    FIN_WAIT2 (balance ended, the peer did not)."""
    return [s for s in bal.sockets() if s.state in ("CLOSE_WAIT", "FIN_WAIT2")]


def assert_settled(bal, baseline_fds: int, timeout: float = 15) -> list:
    """After a case: the master runs, its descriptor count is back to `baseline_fds`, none of its
    sockets is in CLOSE_WAIT or FIN_WAIT2, and every channel's `c` is back to 0 (`-c show`).
    Waits (bounded by `timeout`, scaled) for each; returns the final `show` rows."""
    assert bal.alive(), f"balance died; stderr:\n{bal.stderr()[-4000:]}"
    bal.wait_fd_count(baseline_fds, timeout)
    h.wait_for(lambda: not lingering_sockets(bal), timeout, "no socket of balance in CLOSE_WAIT or FIN_WAIT2")

    def all_released():
        rows = show_rows(bal)
        return rows if rows and all(r["c"] == 0 for r in rows) else None
    rows = h.wait_for(all_released, timeout, "every channel's c back to 0")
    assert bal.alive()
    return rows


# --------------------------------------------------------------------------------------------
# Control commands during a case
# --------------------------------------------------------------------------------------------

class Chatter(threading.Thread):
    """Control clients working on a running balance until stop(): a `-c show`, then a piped
    `-i` session (CHATTER_SCRIPT: disables and re-enables the spare channel of group 1, sets and
    resets its maxc, rewrites group 0 channel 0's maxc with 0, shows, mrtg), over and over.
    stop() joins and fails if any command failed or none ran."""

    def __init__(self, bal, pause: float = 0.05):
        super().__init__(daemon=True)
        self.bal = bal
        self.pause = pause
        self.rounds = 0
        self.errors = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                r = self.bal.ctl("show")
                if r.rc != 0 or r.stderr or not h.parse_show(r.stdout):
                    self.errors.append(("show", r))
                r = h.run(["-i", str(self.bal.port)], rundir=self.bal.rundir, stdin_data=CHATTER_SCRIPT.encode(),
                          timeout=30)
                if r.rc != 0 or r.stderr or "channel 0 disabled" not in r.stdout or "channel 0 enabled" not in r.stdout:
                    self.errors.append(("-i", r))
                self.rounds += 1
            except AssertionError as e:  # a timeout of the control client
                self.errors.append(("timeout", str(e)))
            self._halt.wait(self.pause)

    def stop(self):
        self._halt.set()
        self.join(h.scaled(60))
        assert not self.is_alive(), "control chatter hung"
        assert not self.errors, f"control commands failed during the case: {self.errors[:3]}"
        assert self.rounds > 0, "no control command ran during the case"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.stop()
        else:
            self._halt.set()
            self.join(h.scaled(60))


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------

class Outcome:
    SERVED = "served"   # every byte came back, then the end of stream
    CLOSED = "closed"   # the connection ended early (EOF or reset); what came back was a prefix


def exchange(port: int, n: int, timeout: float = 20, rng=None) -> str:
    """One client of an echo service: sends n random bytes, shuts down writing, reads until the
    end. Returns Outcome.SERVED when exactly the bytes sent came back, Outcome.CLOSED when the
    connection ended early with a prefix of them (or was refused by balance). Raises
    AssertionError on corruption (bytes that were not sent) or when `timeout` (scaled) passes:
    a hang."""
    rng = rng or random
    data = rng.randbytes(n)
    try:
        s = h.connect(port, timeout=timeout)
    except (ConnectionRefusedError, ConnectionResetError):
        return Outcome.CLOSED  # a reset can beat the client's own look at its finished connect
    got = bytearray()
    try:
        deadline = time.monotonic() + h.scaled(timeout)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # ended early (EPIPE, ECONNRESET, ENOTCONN): what came back is checked below
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"client hung: {len(got)} of {n} bytes back after {h.scaled(timeout):.0f}s")
            s.settimeout(left)
            try:
                chunk = s.recv(1 << 18)
            except socket.timeout:
                continue
            except (ConnectionResetError, ConnectionAbortedError):
                break
            if not chunk:
                break
            got += chunk
            if len(got) > n:
                break
    finally:
        s.close()
    if bytes(got) != data[:len(got)]:
        raise AssertionError(f"corrupted echo: {len(got)} bytes back, not a prefix of the {n} sent")
    return Outcome.SERVED if len(got) == n else Outcome.CLOSED


def run_clients(port: int, count: int, size: int, parallel: int = 8, timeout: float = 20, seed: int = 1) -> list:
    """`count` exchange()s of `size` bytes, `parallel` at a time; their outcomes, in order.
    Any AssertionError (corruption, hang) is re-raised."""
    outcomes = [None] * count
    errors = []
    next_index = [0]
    lock = threading.Lock()

    def worker(wid):
        rng = random.Random(seed * 1000 + wid)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= count or errors:
                return
            try:
                outcomes[i] = exchange(port, size, timeout, rng)
            except (AssertionError, OSError) as e:
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(h.scaled(timeout) * (count // parallel + 2))
    assert not any(t.is_alive() for t in threads), "clients still running"
    if errors:
        raise errors[0]
    return outcomes


class Streamer(threading.Thread):
    """A client that keeps exchanging chunks with an echo service (send a chunk, read it back)
    until stop() or until the connection ends. `.outcome`: "running", "closed" (ended by the
    other side), or "error:<text>" (corruption or a hang). `.exchanged` counts bytes echoed."""

    def __init__(self, port: int, chunk: int = 16384, timeout: float = 10, seed: int = 0):
        super().__init__(daemon=True)
        self.port, self.chunk, self.timeout = port, chunk, timeout
        self.rng = random.Random(seed)
        self.sock = h.connect(port, timeout=timeout)
        self.exchanged = 0
        self.outcome = "running"
        self._halt = threading.Event()

    def run(self):
        try:
            while not self._halt.is_set():
                data = self.rng.randbytes(self.chunk)
                try:
                    self.sock.sendall(data)
                    back = h.recv_exact(self.sock, len(data), self.timeout)
                except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                    self.outcome = "closed"
                    return
                except AssertionError as e:
                    self.outcome = "closed" if "EOF after" in str(e) else f"error:{e}"
                    return
                if back != data:
                    self.outcome = "error:corrupted echo"
                    return
                self.exchanged += len(data)
        finally:
            self.sock.close()

    def stop(self):
        self._halt.set()
        self.join(h.scaled(self.timeout + 5))
        assert not self.is_alive(), "streaming client hung"


# --------------------------------------------------------------------------------------------
# Faulty backends
# --------------------------------------------------------------------------------------------

class ResetServer(h._Server):
    """Accepts, then at once closes with a reset (SO_LINGER 0): nothing is ever read or sent."""

    def handle(self, conn, rec):
        h.set_linger_reset(conn)
        rec.end = "we-reset"


class NeverReadServer(h._Server):
    """Accepts and reads nothing until release() (a consumer that has stopped); then reads
    everything, `chunk` bytes at a time (a slow consumer), recording count and sha256."""

    def __init__(self, chunk: int = 16384, **kw):
        self.chunk = chunk
        self.released = threading.Event()
        super().__init__(**kw)

    def release(self):
        self.released.set()

    def handle(self, conn, rec):
        self.released.wait(self.io_timeout)
        digest = hashlib.sha256()
        while True:
            data = conn.recv(self.chunk)
            if not data:
                break
            digest.update(data)
            rec.received_bytes += len(data)
        rec.got_eof.set()
        rec.received_sha256 = digest.hexdigest()


class PartialReplyServer(h._Server):
    """Reads a request of `request` bytes, then sends only `reply` random bytes of its answer
    (kept in rec.sent_* and self.replies) and closes: with a FIN (how="fin") or a reset
    (how="reset")."""

    def __init__(self, request: int, reply: int, how: str = "fin", **kw):
        assert how in ("fin", "reset")
        self.request, self.reply, self.how = request, reply, how
        self.replies = {}
        super().__init__(**kw)

    def handle(self, conn, rec):
        h.recv_exact(conn, self.request, 30)
        rec.received_bytes = self.request
        data = os.urandom(self.reply)
        self.replies[id(rec)] = data
        conn.sendall(data)
        rec.sent_bytes = len(data)
        rec.sent_sha256 = hashlib.sha256(data).hexdigest()
        if self.how == "reset":
            h.set_linger_reset(conn)
        rec.end = "we-closed"


class FlappingServer(threading.Thread):
    """An echo service on a fixed port whose listener goes down and comes back: up for `up` s,
    down (connects refused; its connections are closed) for `down` s, until stop()."""

    def __init__(self, up: float = 0.15, down: float = 0.15):
        super().__init__(daemon=True)
        self.port = h.free_port()
        self.up, self.down = up, down
        self.cycles = 0
        self._halt = threading.Event()
        self.errors = []

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def run(self):
        while not self._halt.is_set():
            try:
                srv = h.EchoServer(port=self.port)
            except OSError as e:  # the port is briefly unavailable: try again
                self.errors.append(e)
                self._halt.wait(0.05)
                continue
            self._halt.wait(self.up)
            srv.close()
            self.cycles += 1
            self._halt.wait(self.down)

    def stop(self):
        self._halt.set()
        self.join(h.scaled(30))
        assert not self.is_alive()

    def close(self):
        if self.is_alive():
            self.stop()


KILLABLE_ECHO = r"""
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            c.shutdown(socket.SHUT_WR)
            return
        c.sendall(d)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


class KillableEchoServer:
    """An echo server in a process of its own, so that it can be killed with SIGKILL."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", KILLABLE_ECHO], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.port = int(self.proc.stdout.readline())

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=h.scaled(10))

    def close(self):
        if self.proc.poll() is None:
            self.kill()
        self.proc.stdout.close()
