#!/usr/bin/env python3
"""Churn soak for balance (issue 5): many short connections and many bytes through a real balance
on loopback, with faults injected at random, checking every byte of every healthy connection.

    tests/soak/soak.py --connections 1000000 --bytes 10G --seconds 3600 --seed 1

What runs (all on 127.0.0.0/8, bounded in count and time, everything stopped at the end):
  - balance -f --threads 2 -t 2 -T 30, group 0 = [backend A, a port that refuses, backend B],
    group 1 = [backend B] (failover);
  - two backend processes (selectors, non-blocking) speaking a small protocol: each connection
    opens with a 12-byte header choosing what the backend does with it;
  - --clients processes, each keeping --concurrency connections in flight (selectors), drawing
    for each connection a size (the byte budget spread over the connections) and a fate:
      echo       80%  the backend echoes everything; the client half-closes and must get back
                      exactly what it sent (healthy)
      slow        4%  the same, the backend answering in small pieces after 2-10 ms (healthy)
      partial     4%  the backend reads everything, answers only the first K bytes and closes:
                      the client must get exactly those (healthy: a short answer is the protocol)
      be-reset    4%  the backend resets after K bytes: whatever came back is a prefix
      cl-reset    4%  the client resets (RST) part-way through sending
      vanish      4%  the client closes at once after connecting (maybe after a few bytes)
    Every byte received by any client must be the byte sent at that position (no corruption,
    faulty connections included), healthy connections must be complete, and none may take longer
    than 60 s (a hang);
  - a control chatter: `-c show` and `-i` sessions disabling/enabling the refusing channel and
    rewriting maxc, twice a second.
Recorded: balance's descriptors and RSS at start, after warm-up (1% of connections), peak, and
at the end once idle; the channels' `c` at the end (must be 0). Exit status 0 when there were no
errors, the targets were met within --seconds, descriptors are back to the start, every `c` is
0 and the RSS at the end is within 16 MiB (--rss-slack-kib) of the warm-up figure. --json writes
the summary.
"""

import argparse
import errno
import heapq
import json
import multiprocessing as mp
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "blackbox"))
import harness  # noqa: E402  (ReadyListener, SANITIZER_MARKERS)
HEADER = struct.Struct("<2sBBII")  # magic, mode, reserved, k, size
MAGIC = b"SK"
MODES = {"echo": 1, "slow": 2, "partial": 3, "be-reset": 4}
FATES = [("echo", 80), ("slow", 4), ("partial", 4), ("be-reset", 4), ("cl-reset", 4), ("vanish", 4)]
HEALTHY = {"echo", "slow", "partial"}
BLOCK_SIZE = 16 << 20      # the random bytes payloads are cut from
MAX_PAYLOAD = 8 << 20
CONN_TIMEOUT = 60.0        # a connection taking longer is a hang
IP_BIND_ADDRESS_NO_PORT = 24
RSS_SLACK_KIB = 16 * 1024


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().rstrip("IB")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------

class BackendConn:
    __slots__ = ("sock", "hdr", "mode", "k", "received", "out", "eof", "kept", "due", "corrupt")

    def __init__(self, sock):
        self.sock = sock
        self.hdr = b""
        self.mode = 0
        self.k = 0
        self.received = 0
        self.out = bytearray()
        self.eof = False
        self.kept = bytearray()  # partial: the first k bytes
        self.due = []            # slow: (time, bytes) not yet released
        self.corrupt = False     # --inject-corruption: flip the next echoed byte


def backend_main(conn_pipe, seed, corrupt_every):
    """One backend process: accepts on its own listener and serves the soak protocol. With
    corrupt_every=N (the checker's self-test), every Nth echo connection gets one byte flipped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(seed)
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    lst.setblocking(False)
    conn_pipe.send(lst.getsockname()[1])
    sel = selectors.DefaultSelector()
    sel.register(lst, selectors.EVENT_READ, None)
    sel.register(conn_pipe, selectors.EVENT_READ, "stop")
    timers = []  # (due, id, conn)
    buf = bytearray(1 << 18)
    view = memoryview(buf)

    def close(c, reset=False):
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        if reset:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()

    def want(c):
        """Registers for what the connection waits for now (nothing while slow replies are due)."""
        ev = 0
        if not c.eof and len(c.out) < (1 << 20) and not (c.mode == MODES["slow"] and len(c.due) > 8):
            ev |= selectors.EVENT_READ
        if c.out:
            ev |= selectors.EVENT_WRITE
        try:
            key = sel.get_key(c.sock)
        except (KeyError, ValueError):
            key = None
        if ev == 0:
            if key is not None:
                sel.unregister(c.sock)
        elif key is None:
            sel.register(c.sock, ev, c)
        elif key.events != ev:
            sel.modify(c.sock, ev, c)

    def flush(c):
        """Sends what is waiting; at the end of the client's stream (and of due slow replies)
        sends a partial answer, then ends the connection. False once it is closed."""
        while c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                return True
            except OSError:
                close(c)
                return False
            del c.out[:n]
        if c.eof and not c.due:
            if c.kept is not None and c.mode == MODES["partial"]:
                c.out += c.kept
                c.kept = None
                return flush(c)
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            close(c)
            return False
        return True

    def on_data(c, data):
        if c.mode == 0:
            c.hdr += bytes(data)
            if len(c.hdr) < HEADER.size:
                return True
            magic, mode, _, k, _ = HEADER.unpack_from(c.hdr)
            if magic != MAGIC:
                close(c, reset=True)
                return False
            c.mode, c.k = mode, k
            data, c.hdr = memoryview(c.hdr), b""
            accepted[0] += 1
            c.corrupt = corrupt_every > 0 and mode == MODES["echo"] and accepted[0] % corrupt_every == 0
        start = c.received
        c.received += len(data)
        if c.mode == MODES["partial"]:
            if start < c.k:
                c.kept += data[: c.k - start]
            return True
        if c.mode == MODES["be-reset"] and c.received >= c.k:
            c.out += data[: max(0, c.k - start)]
            try:
                c.sock.send(c.out)
            except OSError:
                pass
            close(c, reset=True)
            return False
        if c.mode == MODES["slow"]:
            due = time.monotonic() + rng.uniform(0.002, 0.010)
            c.due.append(bytes(data))
            heapq.heappush(timers, (due, id(c), c))
            return True
        if c.corrupt and len(data) > 0:
            data = bytearray(data)
            data[-1] ^= 0x01
            c.corrupt = False
        c.out += data
        return True

    accepted = [0]
    while True:
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, c = heapq.heappop(timers)
            if c.due and c.sock.fileno() >= 0:
                c.out += c.due.pop(0)
                if flush(c):
                    want(c)
        timeout = max(0.0, timers[0][0] - now) if timers else 1.0
        for key, events in sel.select(timeout):
            if key.data == "stop":
                return
            if key.data is None:
                for _ in range(64):
                    try:
                        s, _ = lst.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ, BackendConn(s))
                continue
            c = key.data
            if events & selectors.EVENT_READ:
                try:
                    n = c.sock.recv_into(buf, 4096 if c.mode == MODES["slow"] else len(buf))
                except BlockingIOError:
                    n = -1
                except OSError:
                    close(c)
                    continue
                if n == 0:
                    c.eof = True
                    if c.mode == 0:  # ended before a whole header
                        close(c)
                        continue
                elif n > 0 and not on_data(c, view[:n]):
                    continue
            if flush(c):
                want(c)


def start_backend(seed, corrupt_every=0):
    parent, child = mp.Pipe()
    p = mp.Process(target=backend_main, args=(child, seed, corrupt_every), daemon=True)
    p.start()
    return p, parent, parent.recv()


# ----------------------------------------------------------------------------------------------
# Clients
# ----------------------------------------------------------------------------------------------

class ClientConn:
    __slots__ = ("sock", "fate", "k", "size", "off", "header", "sent", "total", "rpos", "expect", "deadline",
                 "cut", "shut", "connected")


def client_main(idx, args, port, n_conns, n_bytes, deadline, done_counter, out_q):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(args.seed * 7919 + idx)
    block = random.Random(args.seed).randbytes(BLOCK_SIZE)
    bview = memoryview(block)
    fates, weights = zip(*FATES)
    sel = selectors.DefaultSelector()
    stats = {"connections": 0, "bytes_up": 0, "bytes_down": 0, "errors": 0, "error_samples": [],
             "by_fate": {f: 0 for f in fates}, "healthy_ok": 0, "faulty_ended": 0, "port_retries": 0,
             "not_started": 0}
    launched = 0
    remaining_bytes = n_bytes  # payload still to send: drawn sizes of connections in flight count as sent
    in_flight = 0
    rbuf = bytearray(1 << 18)
    rview = memoryview(rbuf)

    def error(c, what):
        stats["errors"] += 1
        if len(stats["error_samples"]) < 20:
            stats["error_samples"].append(f"{c.fate} size={c.size} k={c.k} rpos={c.rpos} sent={c.sent}: {what}")

    def finish(c, how):
        """how: 'eof' or 'reset' (the end the client saw), 'local' (the client ended it), or
        'corrupt' / 'hang' (already counted as errors)."""
        nonlocal in_flight, remaining_bytes
        remaining_bytes += c.size - max(0, c.sent - HEADER.size)  # what it did not send is still to send
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        in_flight -= 1
        stats["connections"] += 1
        stats["by_fate"][c.fate] += 1
        with done_counter.get_lock():
            done_counter.value += 1
        if c.fate in HEALTHY and how not in ("corrupt", "hang"):  # those were counted as errors already
            if how == "eof" and c.rpos == c.expect:
                stats["healthy_ok"] += 1
            else:
                error(c, f"healthy connection ended by {how} after {c.rpos} of {c.expect} bytes")
        else:
            stats["faulty_ended"] += 1

    def expected(c, pos, n):
        if pos >= HEADER.size:
            b = c.off + pos - HEADER.size
            return bview[b:b + n]
        return (c.header + bytes(bview[c.off:c.off + n]))[pos:pos + n]

    def launch():
        nonlocal launched, remaining_bytes, in_flight
        c = ClientConn()
        c.fate = rng.choices(fates, weights)[0]
        left = n_conns - launched
        avg = remaining_bytes / left if left else 0
        c.size = min(int(rng.expovariate(1 / avg)) if avg > 0 else 0, MAX_PAYLOAD, max(remaining_bytes, 0))
        remaining_bytes -= c.size
        launched += 1
        c.off = rng.randrange(BLOCK_SIZE - c.size + 1)
        c.total = HEADER.size + c.size
        c.k = rng.randrange(c.total + 1)
        mode = MODES.get(c.fate, MODES["echo"])
        c.header = HEADER.pack(MAGIC, mode, 0, c.k, c.size)
        c.expect = c.k if c.fate == "partial" else c.total
        c.sent = c.rpos = 0
        c.cut = rng.randrange(c.total + 1) if c.fate == "cl-reset" else -1
        c.shut = False
        c.connected = False
        c.deadline = time.monotonic() + CONN_TIMEOUT
        for _ in range(20):
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            try:  # spread source addresses over 127/8 so loopback ports last
                s.bind((f"127.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", 0))
                rc = s.connect_ex(("127.0.0.1", port))
            except OSError as e:
                rc = e.errno
            if rc in (0, errno.EINPROGRESS):
                break
            s.close()
            if rc == errno.EADDRNOTAVAIL:
                stats["port_retries"] += 1
                continue
            c.sock = socket.socket()
            in_flight += 1
            error(c, f"connect to balance: {os.strerror(rc)}")
            finish(c, "local")
            return
        c.sock = s
        in_flight += 1
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ, c)

    def send_some(c):
        if c.fate == "vanish":
            if c.size and rng.random() < 0.5:
                try:
                    c.sock.send(c.header)
                except OSError:
                    pass
            finish(c, "local")
            return False
        limit = c.cut if c.cut >= 0 else c.total
        while c.sent < limit:
            if c.sent < HEADER.size:
                chunk = c.header[c.sent:limit]
            else:
                b = c.off + c.sent - HEADER.size
                chunk = bview[b:b + min(limit - c.sent, 1 << 20)]
            try:
                n = c.sock.send(chunk)
            except BlockingIOError:
                return True
            except OSError as e:
                if c.fate in HEALTHY:
                    error(c, f"send: {e}")
                finish(c, "reset")
                return False
            c.sent += n
            stats["bytes_up"] += n
        if c.cut >= 0:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            finish(c, "local")
            return False
        if not c.shut:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.shut = True
            sel.modify(c.sock, selectors.EVENT_READ, c)
        return True

    def receive(c):
        while True:
            try:
                n = c.sock.recv_into(rbuf)
            except BlockingIOError:
                return True
            except (ConnectionResetError, ConnectionAbortedError):
                finish(c, "reset")
                return False
            except OSError as e:
                error(c, f"recv: {e}")
                finish(c, "reset")
                return False
            if n == 0:
                finish(c, "eof")
                return False
            if c.rpos + n > c.expect or expected(c, c.rpos, n) != rview[:n]:
                error(c, f"CORRUPTED: {n} bytes at offset {c.rpos} are not what was sent there")
                finish(c, "corrupt")
                return False
            c.rpos += n
            stats["bytes_down"] += n
            if n < len(rbuf):
                return True

    last_sweep = time.monotonic()
    while True:
        now = time.monotonic()
        while in_flight < args.concurrency and launched < n_conns and now < deadline:
            launch()
        if in_flight == 0 and (launched >= n_conns or now >= deadline):
            break
        for key, events in sel.select(0.5):
            c = key.data
            if c.sock.fileno() < 0:
                continue
            if not c.connected:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    if c.fate in HEALTHY:
                        error(c, f"connect: {os.strerror(err)}")
                    finish(c, "reset")
                    continue
                c.connected = True
            if events & selectors.EVENT_READ and not receive(c):
                continue
            if events & selectors.EVENT_WRITE:
                send_some(c)
        if now - last_sweep > 1.0:
            last_sweep = now
            for key in list(sel.get_map().values()):
                c = key.data
                if now > c.deadline:
                    error(c, f"HANG: no end after {CONN_TIMEOUT:.0f}s")
                    finish(c, "hang")
    stats["not_started"] = n_conns - launched
    out_q.put(stats)


# ----------------------------------------------------------------------------------------------
# balance and the measurements
# ----------------------------------------------------------------------------------------------

def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()[0] if v.split() else ""
    return fields


def balance_figures(pid):
    st = proc_status(pid)
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "rss_kib": int(st["VmRSS"]), "hwm_kib": int(st["VmHWM"])}


def free_port():
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        return s.getsockname()[1]


def listening(pid, port):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for line in f.read().splitlines()[1:]:
                p = line.split()
                if p[3] == "0A" and int(p[1].split(":")[1], 16) == port and p[9] in inodes:
                    return True
    return False


def ctl(binary, env, args, stdin=None):
    return subprocess.run([binary, *args], env=env, input=stdin, capture_output=True, timeout=30)


def show_rows(binary, env, port):
    r = ctl(binary, env, ["-c", "show", str(port)])
    rows = []
    for line in r.stdout.decode().splitlines():
        p = line.split()
        if len(p) >= 11 and p[0].isdigit():
            rows.append({"grp": int(p[0]), "ch": int(p[2]), "state": p[3], "c": int(p[6]), "totalc": int(p[7])})
    return rows


class Chatter(threading.Thread):
    SCRIPT = b"show\ndisable 1\nmaxc 0 0\nshow\nenable 1\nmrtg-conns 0 1\nquit\n"

    def __init__(self, binary, env, port):
        super().__init__(daemon=True)
        self.binary, self.env, self.port = binary, env, port
        self.halt = threading.Event()
        self.rounds = 0
        self.failures = []

    def run(self):
        while not self.halt.wait(0.5):
            for args, stdin in ((["-c", "show", str(self.port)], None), (["-i", str(self.port)], self.SCRIPT)):
                try:
                    r = ctl(self.binary, self.env, args, stdin)
                    if r.returncode != 0 or r.stderr:
                        self.failures.append(f"{args}: rc={r.returncode} {r.stderr[-200:]!r}")
                except subprocess.TimeoutExpired:
                    self.failures.append(f"{args}: timed out")
            self.rounds += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--balance", default=os.environ.get("BALANCE_BIN") or os.path.join(REPO, "build", "balance"))
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--bytes", type=parse_size, default=parse_size("512M"), help="payload the clients send (echoed back)")
    ap.add_argument("--seconds", type=float, default=120, help="hard cap on the run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clients", type=int, default=3, help="client processes")
    ap.add_argument("--concurrency", type=int, default=32, help="connections in flight per client process")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--rss-slack-kib", type=int, default=RSS_SLACK_KIB,
                    help="how much balance's RSS may grow from warm-up to the end (a sanitized build needs more)")
    ap.add_argument("--inject-corruption", type=int, default=0, metavar="N",
                    help="self-test of the checker: the backends flip a byte in every Nth echo connection")
    args = ap.parse_args()

    t_start = time.monotonic()
    hard_deadline = t_start + args.seconds
    backends = [start_backend(args.seed * 31 + i, args.inject_corruption) for i in range(2)]
    refused = free_port()
    port = free_port()
    rundir = tempfile.mkdtemp(prefix="balance-soak-")
    env = dict(os.environ, BALANCE_RUNDIR=rundir)
    # balance listens before it has opened all it serves with (control segment, threads, spare
    # descriptors); it says READY=1 once it has: the descriptor baseline is taken after that.
    ready = harness.ReadyListener()
    env["NOTIFY_SOCKET"] = ready.address
    a, b = backends[0][2], backends[1][2]
    cmd = [args.balance, "-f", "--threads", "2", "-t", "2", "-T", "30", str(port),
           f"127.0.0.1:{a}", f"127.0.0.1:{refused}", f"127.0.0.1:{b}", "!", f"127.0.0.1:{b}"]
    err_path = os.path.join(rundir, "stderr")
    with open(err_path, "wb") as err:
        bal = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                               start_new_session=True)
    summary = {"command": " ".join(sys.argv), "balance": cmd, "target_connections": args.connections,
               "target_bytes": args.bytes, "seed": args.seed}
    ok = True
    try:
        while not (ready.ready() and listening(bal.pid, port)):
            if bal.poll() is not None or time.monotonic() > t_start + 20:
                raise SystemExit(f"balance did not start (listening, READY=1): {open(err_path).read()}")
            time.sleep(0.02)
        ready.close()
        env.pop("NOTIFY_SOCKET")  # the control commands run below are not balance's service
        summary["start"] = balance_figures(bal.pid)
        chatter = Chatter(args.balance, env, port)
        chatter.start()
        done = mp.Value("q", 0)
        out_q = mp.Queue()
        procs = []
        for i in range(args.clients):
            n = args.connections // args.clients + (1 if i < args.connections % args.clients else 0)
            nb = args.bytes // args.clients
            p = mp.Process(target=client_main, args=(i, args, port, n, nb, hard_deadline, done, out_q), daemon=True)
            p.start()
            procs.append(p)
        warm_at = max(1, args.connections // 100)
        peak = summary["start"]["rss_kib"]
        results = []
        last_print = time.monotonic()
        while len(results) < len(procs):
            try:
                results.append(out_q.get(timeout=1))
            except Exception:
                pass
            if "warm" not in summary and done.value >= warm_at:
                summary["warm"] = balance_figures(bal.pid)
            if bal.poll() is not None:
                raise SystemExit(f"balance exited with {bal.returncode}: {open(err_path).read()[-4000:]}")
            peak = max(peak, balance_figures(bal.pid)["rss_kib"])
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                print(f"  {time.monotonic() - t_start:7.1f}s  {done.value} connections", file=sys.stderr, flush=True)
            if time.monotonic() > hard_deadline + CONN_TIMEOUT + 30:
                for p in procs:
                    p.kill()
                raise SystemExit("client processes did not finish in time")
        for p in procs:
            p.join(10)
        duration = time.monotonic() - t_start
        chatter.halt.set()
        chatter.join(60)
        # Idle again: descriptors back to the start, every slot given back.
        settle_deadline = time.monotonic() + 40
        end = balance_figures(bal.pid)
        while end["fds"] != summary["start"]["fds"] and time.monotonic() < settle_deadline:
            time.sleep(0.2)
            end = balance_figures(bal.pid)
        rows = show_rows(args.balance, env, port)
        while any(r["c"] for r in rows) and time.monotonic() < settle_deadline:
            time.sleep(0.2)
            rows = show_rows(args.balance, env, port)
        summary["end"] = balance_figures(bal.pid)
        summary["peak_rss_kib"] = peak
        summary["warm"] = summary.get("warm", summary["start"])
        summary["channels"] = rows
        total = {}
        for r in results:
            for k, v in r.items():
                if isinstance(v, dict):
                    total.setdefault(k, {})
                    for kk, vv in v.items():
                        total[k][kk] = total[k].get(kk, 0) + vv
                elif isinstance(v, list):
                    total.setdefault(k, []).extend(v)
                else:
                    total[k] = total.get(k, 0) + v
        summary.update(total)
        summary["duration_s"] = round(duration, 1)
        summary["connections_per_s"] = round(total["connections"] / duration, 1)
        summary["mib_per_s_each_way"] = round(total["bytes_up"] / duration / (1 << 20), 1)
        summary["chatter_rounds"] = chatter.rounds
        summary["chatter_failures"] = chatter.failures[:5]
        checks = {
            "no errors": total["errors"] == 0,
            "all connections run": total["connections"] >= args.connections,
            "bytes sent": total["bytes_up"] >= args.bytes * 0.99,
            "descriptors back to start": summary["end"]["fds"] == summary["start"]["fds"],
            "every c back to 0": bool(rows) and all(r["c"] == 0 for r in rows),
            "RSS flat": summary["end"]["rss_kib"] - summary["warm"]["rss_kib"] < args.rss_slack_kib,
            "control commands answered": chatter.rounds > 0 and not chatter.failures,
            "balance alive": bal.poll() is None,
        }
        summary["checks"] = checks
        ok = all(checks.values())
    finally:
        if bal.poll() is None:
            bal.send_signal(signal.SIGTERM)
            try:
                bal.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(bal.pid, signal.SIGKILL)
                bal.wait(10)
                ok = False
        summary["balance_exit"] = bal.returncode
        for p, pipe, _ in backends:
            try:
                pipe.send("stop")
            except OSError:
                pass
            p.join(10)
            if p.is_alive():
                p.kill()
    # Stopped by SIGTERM, balance exits 0; a sanitized build that reported an error says so on
    # stderr (a ThreadSanitizer report does not stop the process, and leaves it holding the
    # descriptors of the symbolizer it started).
    with open(err_path, errors="replace") as f:
        err_text = f.read()
    reports = [m for m in harness.SANITIZER_MARKERS if m in err_text]
    checks["stopped cleanly, no sanitizer report"] = bal.returncode == 0 and not reports
    if not checks["stopped cleanly, no sanitizer report"]:
        summary["stderr_tail"] = err_text[-4000:]
    ok = ok and checks["stopped cleanly, no sanitizer report"]
    summary["ok"] = ok
    text = json.dumps(summary, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
