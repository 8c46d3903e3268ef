"""Operations: graceful stop (SIGTERM and `kill`), stop-now on a second signal, and upgrade in
place (SIGUSR2) under continuous traffic with every byte checked and the shared state kept."""

import hashlib
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import harness as h


def echo_roundtrip(sock, payload):
    sock.sendall(payload)
    return h.recv_exact(sock, len(payload))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT], ids=["SIGTERM", "SIGQUIT"])
def test_graceful_stop_lets_live_connections_finish(start_balance, backends, sig):
    """After SIGTERM (or SIGQUIT, balance(1)) new clients are refused, a connection in flight
    still completes its exchange, and balance exits 0 as soon as it is done (well within --grace)."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "30"])
    live = h.connect(port)
    assert echo_roundtrip(live, b"before") == b"before"
    b.proc.send_signal(sig)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except ConnectionResetError:
            # The probe was queued on a listener that closed before it was accepted (the kernel
            # resets what a closing listener still holds): not refused yet, probe again.
            return False
        except ConnectionRefusedError:
            return True
    h.wait_for(refused, 10, "new connections refused after SIGTERM")
    assert b.alive(), "balance exited although a connection was still live"
    assert echo_roundtrip(live, b"after the stop began") == b"after the stop began"
    live.shutdown(socket.SHUT_WR)
    assert h.recv_until_eof(live) == b""
    live.close()
    assert b.wait_exit(10) == 0
    assert "stopped" in b.stderr()


def test_grace_period_ends_what_is_left(start_balance, backends):
    """A connection that does not finish within --grace is cut when the grace period ends, with a
    reset to both peers: an end of stream would pass the cut stream off as complete."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "1"])
    idle = h.connect(port)
    assert echo_roundtrip(idle, b"x") == b"x"
    started = time.monotonic()
    b.proc.send_signal(signal.SIGTERM)
    assert b.wait_exit(15) == 0
    assert time.monotonic() - started >= 0.9
    assert h.expect_closed(idle) == "reset"
    assert "grace period over" in b.stderr()
    rec = srv.records[0]
    assert rec.ended.wait(h.scaled(10))
    assert rec.end == "reset"


def test_second_sigterm_stops_at_once(start_balance, backends):
    """A second SIGTERM during the drain stops balance at once, resetting what is left."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "600"])
    idle = h.connect(port)
    assert echo_roundtrip(idle, b"x") == b"x"
    b.proc.send_signal(signal.SIGTERM)
    h.wait_for(lambda: "shutting down" in b.stderr(), 10, "the drain to begin")
    b.proc.send_signal(signal.SIGTERM)
    assert b.wait_exit(10) == 0
    assert h.expect_closed(idle) == "reset"
    assert "stopping now" in b.stderr()


def test_sigint_in_the_foreground_stops_at_once_and_says_so(start_balance, backends):
    """SIGINT in the foreground (Ctrl-C) stops at once, as documented, and the log says "stopping
    now", not "shutting down" (which announces a drain that does not happen)."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "600"])
    live = h.connect(port)
    assert echo_roundtrip(live, b"x") == b"x"
    b.proc.send_signal(signal.SIGINT)
    assert b.wait_exit(10) == 0
    assert h.expect_closed(live) == "reset"
    assert "signal 2 received, stopping now" in b.stderr()
    assert "shutting down" not in b.stderr()


STRAY_SIGNALS = [signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM, signal.SIGPIPE, signal.SIGSTKFLT,
                 signal.SIGRTMIN, signal.SIGRTMIN + 3, signal.SIGRTMAX]


@pytest.mark.parametrize("sig", STRAY_SIGNALS,
                         ids=lambda s: f"SIGRTMIN+{s - signal.SIGRTMIN}" if s > signal.SIGRTMIN and s < signal.SIGRTMAX
                         else signal.Signals(s).name)
def test_stray_signals_are_ignored(start_balance, backends, sig):
    """A signal that means nothing to balance (SIGUSR1 and SIGALRM used to kill it, cutting every
    stream) leaves it serving: a live connection goes on, a new one is served."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address])
    live = h.connect(port)
    assert echo_roundtrip(live, b"before") == b"before"
    for _ in range(3):
        b.proc.send_signal(sig)
    with h.connect(port) as fresh:
        assert echo_roundtrip(fresh, b"new") == b"new"
    assert echo_roundtrip(live, b"after") == b"after"
    assert b.alive()
    live.close()


def test_sigusr2_while_stopping_says_it_is_ignored(start_balance, backends):
    """SIGUSR2 to a master that drains after SIGTERM upgrades nothing, and says so in one line
    (before: nothing was said, and the operator took the upgrade for done); the live connection
    is still served and the stop completes."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "20"])
    live = h.connect(port)
    assert echo_roundtrip(live, b"x") == b"x"
    b.proc.send_signal(signal.SIGTERM)
    h.wait_for(lambda: "shutting down" in b.stderr(), 10, "the drain to begin")
    b.proc.send_signal(signal.SIGUSR2)
    h.wait_for(lambda: "SIGUSR2 ignored: this master is stopping" in b.stderr(), 10, "the master to say so")
    assert "starting a new master" not in b.stderr()
    assert echo_roundtrip(live, b"still served") == b"still served"
    live.close()
    assert b.wait_exit(30) == 0


def test_a_second_instance_on_the_port_exits_71_while_it_serves_and_69_while_it_drains(
        start_balance, backends, rundir):
    """balance(1), EXIT STATUS: a second instance on the port of one that serves meets the bound
    port (71, `Address already in use`); on the port of one that no longer listens but still
    drains it meets the channel table in use (69, `is already running`: the unit retries it)."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "20"])
    second = ["-f", str(port), srv.address]
    res = h.run(second, rundir=rundir, timeout=20)
    assert res.rc == 71, res
    assert "Address already in use" in res.stderr, res.stderr
    live = h.connect(port)
    assert echo_roundtrip(live, b"x") == b"x"
    b.proc.send_signal(signal.SIGTERM)
    h.wait_for(lambda: not h.is_listening(b.pid, port), 10, "the listener to close")
    res = h.run(second, rundir=rundir, timeout=20)
    assert res.rc == 69, res
    assert f"balance on port {port} is already running" in res.stderr, res.stderr
    assert echo_roundtrip(live, b"still served") == b"still served"
    live.close()
    assert b.wait_exit(30) == 0


def test_control_kill_waits_for_the_drain(start_balance, backends):
    """`balance -c kill` stops gracefully: a live connection still completes (kill waits for the
    grace period rather than cutting it short), then it prints the classic message."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "20"])
    live = h.connect(port)
    assert echo_roundtrip(live, b"x") == b"x"
    result = {}
    killer = threading.Thread(target=lambda: result.update(r=b.ctl("kill", timeout=60)))
    killer.start()
    h.wait_for(lambda: "shutting down" in b.stderr(), 10, "the drain to begin")
    # The drain is under way; the live connection is still served:
    assert echo_roundtrip(live, b"still served") == b"still served"
    live.close()
    killer.join(60)
    r = result["r"]
    assert r.rc == 0 and r.stdout == "shutdown complete, exiting.\n", r
    assert b.wait_exit(10) == 0


def waiting_in_poll(pid):
    """True while process `pid` sits in poll/ppoll (/proc/PID/syscall: x86-64 and arm64 numbers)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return False
    machine = os.uname().machine
    return nr in ({"7", "271"} if machine == "x86_64" else {"73"} if machine == "aarch64" else set())


def test_control_kill_of_a_draining_instance_lets_it_drain(start_balance, backends):
    """`balance -c kill` on an instance that already drains after a SIGTERM (from systemd, or an
    operator) only waits: the live connection goes on being served until it ends, and kill then
    says "shutdown complete". (Before: kill's SIGTERM was the master's second, "stop now", and
    reset the connection that --grace was letting finish.)"""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "30"])
    live = h.connect(port)
    assert echo_roundtrip(live, b"x") == b"x"
    b.proc.send_signal(signal.SIGTERM)
    h.wait_for(lambda: "shutting down" in b.stderr(), 10, "the drain to begin")
    killer = subprocess.Popen([h.BALANCE_BIN, "-c", "kill", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, BALANCE_RUNDIR=b.rundir))
    try:
        h.wait_for(lambda: waiting_in_poll(killer.pid) or killer.poll() is not None, 10,
                   "kill to wait for the master")
        assert "stopping now" not in b.stderr(), b.stderr()
        assert echo_roundtrip(live, b"still served") == b"still served"
        live.close()
        out, err = killer.communicate(timeout=h.scaled(60))
    finally:
        if killer.poll() is None:
            killer.kill()
            killer.wait()
    assert killer.returncode == 0 and out == "shutdown complete, exiting.\n", (out, err)
    assert b.wait_exit(10) == 0


@pytest.fixture
def successors():
    """Pids of masters started by an upgrade (not children of the test): whichever is still
    running when the test ends, passed or failed, is killed."""
    pids = []
    yield pids
    binary = os.path.realpath(h.BALANCE_BIN)
    for pid in pids:
        try:
            still_ours = os.path.realpath(f"/proc/{pid}/exe") == binary  # not a recycled pid
        except OSError:
            continue
        if still_ours and h.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def successor_pid(b):
    """The master pid the control segment names (via the -i banner), or None. The banner said 0
    while a master was being handed over (the pid and its start time were read apart; see
    ctl_segment_test.cpp, AMasterBeingHandedOverIsNeverTakenForGone), and says 0 when no master
    lives: that is no pid, and os.kill(0, ...) would signal the test's whole process group (in
    CI that killed ctest and .ci/run itself with SIGUSR2)."""
    r = b.run(["-i", str(b.port)])
    for line in r.stdout.splitlines():
        if line.startswith("PID of master process is "):
            pid = int(line.rsplit(" ", 1)[1])
            return pid if pid > 0 else None
    return None


def new_master(b, known, what):
    """Waits until the control segment names a master not in `known`; returns its pid."""
    seen = {}

    def named():
        seen["pid"] = successor_pid(b)
        return seen["pid"] is not None and seen["pid"] not in known
    h.wait_for(named, 30, what)
    return seen["pid"]


def upgrade_last(b, masters, successors, step):
    """SIGUSR2 to the last of `masters`; appends the new master's pid to both lists."""
    os.kill(masters[-1], signal.SIGUSR2)
    masters.append(new_master(b, masters, f"upgrade {step}: a new master"))
    successors.append(masters[-1])


class Clients:
    """Client threads running `targets` against `port` until finish(); failures go to errors."""

    def __init__(self, port, targets):
        self.port = port
        self.stop = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(h.scaled(30))


class Traffic(Clients):
    """Short connections in a loop plus long echo streams, all checked; counts errors."""

    def __init__(self, port, long_streams=2):
        self.short_ok = 0
        self.long_bytes = 0
        super().__init__(port, [self.short_loop] + [self.long_stream] * long_streams)

    def short_loop(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=h.scaled(5)) as s:
                    s.settimeout(h.scaled(5))
                    msg = os.urandom(64)
                    if echo_roundtrip(s, msg) != msg:
                        self.errors.append("short: corrupted")
                    s.shutdown(socket.SHUT_WR)
                    h.recv_until_eof(s)
                self.short_ok += 1
            except Exception as e:  # any failure is what the test counts
                self.errors.append(f"short: {e!r}")

    def long_stream(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=h.scaled(5)) as s:
                s.settimeout(h.scaled(10))
                while not self.stop.is_set():
                    msg = os.urandom(32768)
                    if echo_roundtrip(s, msg) != msg:
                        self.errors.append("long: corrupted")
                        return
                    self.long_bytes += len(msg)
                s.shutdown(socket.SHUT_WR)
                h.recv_until_eof(s)
        except Exception as e:
            self.errors.append(f"long: {e!r}")


def test_upgrade_in_place_under_traffic(start_balance, backends, rundir, successors):
    """SIGUSR2 starts a new master that takes over the listener and the shared table: under
    continuous short and long connections no client sees an error and every byte is checked;
    the admin state (a disabled channel) and the counters carry over; the old master drains
    and exits; the control shell then reaches the new master."""
    a = backends(h.EchoServer())
    spare = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [a.address, spare.address], opts=["--grace", "30"])
    assert b.ctl("disable 1").stdout == "channel 1 disabled\n"
    traffic = Traffic(port)
    h.wait_for(lambda: traffic.short_ok > 50 and traffic.long_bytes > 1 << 20, 30, "traffic to flow")
    before = h.parse_show(b.ctl("show").stdout)
    short_before = traffic.short_ok
    b.proc.send_signal(signal.SIGUSR2)
    new_pid = new_master(b, [b.pid], "a new master to take over")
    successors.append(new_pid)
    h.wait_for(lambda: traffic.short_ok > short_before + 200, 30, "traffic through the new master")
    traffic.finish()
    assert traffic.errors == [], traffic.errors[:5]
    assert b.wait_exit(30) == 0, "the old master did not drain and exit"
    after = h.parse_show(b.ctl("show").stdout)
    assert after[1]["state"] == "dis", "admin state lost in the upgrade"
    assert after[0]["totalc"] >= before[0]["totalc"] + 200, (before, after)
    assert after[1]["totalc"] == 0
    assert after[0]["c"] == 0 and after[1]["c"] == 0
    r = b.ctl("kill")
    assert r.rc == 0 and r.stdout == "shutdown complete, exiting.\n"
    h.wait_for(lambda: not h.pid_alive(new_pid), 15, "the new master to stop")
    print(f"upgrade: {traffic.short_ok} short connections, {traffic.long_bytes} long-stream bytes, "
          f"0 errors")


def test_a_replaced_master_stops_checking_the_channels(start_balance, backends, successors):
    """With --check, the master an upgrade replaced stops its health checker at the hand-over
    while it drains (the new master checks the channels and writes their health into the same
    table); its live connection is still served. (Before: both masters checked every channel
    until the old one had drained, twice the checks, and two verdicts on one channel.)"""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--check", "1", "--grace", "60"])
    # (listening comes first: the threads start, and are named, right after)
    h.wait_for(lambda: "health checks" in h.thread_names(b.pid).values(), 15, "the checks to start")
    with h.connect(port) as held:  # keeps the old master draining
        assert echo_roundtrip(held, b"before") == b"before"
        b.proc.send_signal(signal.SIGUSR2)
        new_pid = new_master(b, [b.pid], "a new master to take over")
        successors.append(new_pid)
        h.wait_for(lambda: "health checks" in h.thread_names(new_pid).values(), 15, "the new master's checks")
        h.wait_for(lambda: "health checks" not in h.thread_names(b.pid).values(), 15,
                   "the replaced master to stop its checks")
        assert b.alive(), "the replaced master should still drain its connection"
        assert echo_roundtrip(held, b"after") == b"after"
    assert b.wait_exit(30) == 0, "the old master did not drain and exit"
    assert b.ctl("show").rc == 0
    r = b.ctl("kill")
    assert r.rc == 0 and r.stdout == "shutdown complete, exiting.\n"
    h.wait_for(lambda: not h.pid_alive(new_pid), 15, "the new master to stop")


def test_the_shell_names_the_new_master_after_an_upgrade(start_balance, backends, successors):
    """A -i shell attached before an upgrade stays attached to the instance; its next command
    is answered by the new master's table, preceded once by the new PID in the banner's words."""
    srv = backends(h.EchoServer())
    b = start_balance(h.free_port(), [srv.address], opts=["--grace", "30"])
    shell = subprocess.Popen([h.BALANCE_BIN, "-i", str(b.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=h._env(b.rundir, None), start_new_session=True)
    try:
        prompt = b"balance[0] "
        out = b""
        shell.stdin.write(b"show\n")
        shell.stdin.flush()
        deadline = time.monotonic() + h.scaled(10)
        while out.count(prompt) < 2 and time.monotonic() < deadline:  # the show, and the next prompt
            # wait with a bound: a read alone would block for ever on a shell that says nothing
            if select.select([shell.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
                out += os.read(shell.stdout.fileno(), 4096)  # unbuffered: nothing left unseen by select
        assert out.startswith(b"balance ") and out.count(prompt) == 2, out
        assert f"PID of master process is {b.pid}\n".encode() in out
        b.proc.send_signal(signal.SIGUSR2)
        new_pid = new_master(b, [b.pid], "a new master to take over")
        successors.append(new_pid)
        rest, err = shell.communicate(b"show\nshow\nquit\n", timeout=h.scaled(10))
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    assert shell.returncode == 0 and err == b"", (shell.returncode, err)
    announce = f"PID of master process is now {new_pid}\n".encode()
    assert rest.startswith(announce) and rest.count(b"PID of master") == 1, rest
    shows = rest[len(announce):].split(prompt)
    assert len(shows) == 3 and shows[0] == shows[1] and shows[2] == b"", rest  # show, show, quit
    assert str(srv.port).encode() in shows[0], rest
    assert b.wait_exit(30) == 0, "the old master did not drain and exit"
    assert b.ctl("kill").rc == 0
    h.wait_for(lambda: not h.pid_alive(new_pid), 15, "the new master to stop")


def test_upgrade_twice_in_a_row_under_traffic(start_balance, backends, successors):
    """A master started by an upgrade is upgraded in turn, while its predecessor still drains
    long connections: across both upgrades no client sees an error and every byte is checked,
    both old masters exit once their connections end, and the third master serves, with every
    connection of all three counted in the shared table."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["--grace", "30"])
    traffic = Traffic(port)  # its two long streams stay on the first master until finish()
    h.wait_for(lambda: traffic.short_ok > 50 and traffic.long_bytes > 1 << 20, 30, "traffic to flow")
    masters = [b.pid]
    for step in (1, 2):
        short_before = traffic.short_ok
        upgrade_last(b, masters, successors, step)
        h.wait_for(lambda: traffic.short_ok > short_before + 200, 30,
                   f"upgrade {step}: traffic through the new master")
    assert h.pid_alive(masters[0]), "the first master left while its long connections were live"
    traffic.finish()
    assert traffic.errors == [], traffic.errors[:5]
    assert b.wait_exit(30) == 0, "the first master did not drain and exit"
    h.wait_for(lambda: not h.pid_alive(masters[1]), 30, "the second master to drain and exit")
    assert successor_pid(b) == masters[2]
    h.wait_for(lambda: h.parse_show(b.ctl("show").stdout)[0]["c"] == 0, 10, "no connection left open")
    show = h.parse_show(b.ctl("show").stdout)
    assert show[0]["totalc"] == traffic.short_ok + 2, (show, traffic.short_ok)
    r = b.ctl("kill")
    assert r.rc == 0 and r.stdout == "shutdown complete, exiting.\n"
    h.wait_for(lambda: not h.pid_alive(masters[2]), 15, "the third master to stop")


class Scrapes(Clients):
    """GET /metrics in a loop from two threads, a new connection each time; counts the answers
    and keeps every failure (a refused connection, a reset, an error status)."""

    def __init__(self, port):
        self.ok = 0
        super().__init__(port, [self.loop] * 2)

    def loop(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=h.scaled(5)) as s:
                    s.settimeout(h.scaled(10))
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = h.recv_until_eof(s)
                if not answer.startswith(b"HTTP/1.1 200 ") or b"balance_accepted_connections_total" not in answer:
                    self.errors.append(f"answer: {answer[:80]!r}")
                self.ok += 1
            except Exception as e:  # any failure is what the test counts
                self.errors.append(repr(e))


def test_no_scrape_is_refused_across_upgrades(start_balance, backends, successors):
    """The --metrics socket is handed to the new master with the listener: scrapes in a loop
    across two upgrades in a row are all answered, and the third master serves the port. (Before:
    the old master closed the port before starting the new one, which bound it anew: 14-37 ms
    of refused connections per upgrade.)"""
    srv = backends(h.EchoServer())
    port, mport = h.free_port(), h.free_port()
    b = start_balance(port, [srv.address], opts=["--metrics", f"127.0.0.1:{mport}"])
    h.wait_for(lambda: h.is_listening(b.pid, mport), 15, "balance to serve --metrics")
    scrapes = Scrapes(mport)
    try:
        h.wait_for(lambda: scrapes.ok > 20, 30, "scrapes to be answered")
        masters = [b.pid]
        for step in (1, 2):
            before = scrapes.ok
            upgrade_last(b, masters, successors, step)
            h.wait_for(lambda: not h.pid_alive(masters[-2]), 30,
                       f"upgrade {step}: the old master to exit")
            h.wait_for(lambda: scrapes.ok > before + 20, 30, f"upgrade {step}: scrapes after the old master left")
    finally:
        scrapes.finish()
    assert scrapes.errors == [], scrapes.errors[:5]
    assert h.is_listening(masters[2], mport)
    r = b.ctl("kill")
    assert r.rc == 0 and r.stdout == "shutdown complete, exiting.\n"
    h.wait_for(lambda: not h.pid_alive(masters[2]), 15, "the third master to stop")
    print(f"upgrades: {scrapes.ok} scrapes, 0 refused")


def installed_copy(start_balance, backends, tmp_path, opts=()):
    """balance started from a copy of the program in tmp_path (so that a test can "install"
    another program in its place before SIGUSR2): (Balance, the copy's path, the backend)."""
    srv = backends(h.EchoServer())
    program = tmp_path / "balance"
    shutil.copy(h.BALANCE_BIN, program)
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=list(opts), start=False)
    b.cmd[0] = str(program)
    b.start()
    return b, program, srv


def install(program, text):
    """Puts a shell script in place of the program file, as an installation does (rename)."""
    new = program.parent / "new-program"
    new.write_text(text)
    new.chmod(0o755)
    os.rename(new, program)


def upgrade_failure_line(b):
    """Sends SIGUSR2 and waits for the master to say that it goes on serving: that one line."""
    b.proc.send_signal(signal.SIGUSR2)
    h.wait_for(lambda: "this master goes on serving" in b.stderr(), 40, "the upgrade to fail")
    lines = [line for line in b.stderr().splitlines() if "this master goes on serving" in line]
    assert len(lines) == 1, b.stderr()
    return lines[0]


def test_a_failed_upgrade_leaves_the_old_master_in_charge_of_the_table(start_balance, backends, tmp_path):
    """A new master that fails after taking over the control table (here: its --metrics
    address is taken) leaves the old one serving, and the control shell still reaches it: the
    table names the old master again. (Before: the table named the dead successor, and every
    `-c` command said "no master process", exit 69, while the old master served on.)"""
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        b, program, _ = installed_copy(start_balance, backends, tmp_path)
        install(program, f'#!/bin/sh\nexec "{h.BALANCE_BIN}" --metrics 127.0.0.1:{taken.getsockname()[1]} "$@"\n')
        line = upgrade_failure_line(b)
        assert b.alive()
        r = b.ctl("disable 0")
        assert r.rc == 0 and r.stdout == "channel 0 disabled\n", r
        assert b.ctl("enable 0").rc == 0
        assert successor_pid(b) == b.pid
        with h.connect(b.port) as c:
            assert echo_roundtrip(c, b"still served") == b"still served"
        assert "cannot listen for --metrics" in line and "Address already in use; this master" in line, line
    finally:
        taken.close()


@pytest.mark.parametrize("case", ["missing", "exits"])
def test_a_new_program_that_does_not_start_is_named_with_the_reason(start_balance, backends, tmp_path, case):
    """SIGUSR2 when the program file is gone, or exits at once: the old master goes on serving
    and says why in one line (cannot execute: the errno; or the status it exited with). (Before:
    "exec of ... failed or timed out" for both, which sent an operator after the wrong cause.)"""
    b, program, _ = installed_copy(start_balance, backends, tmp_path)
    if case == "missing":
        os.unlink(program)
        expected = f"upgrade: cannot execute {program}: No such file or directory; this master goes on serving"
    else:
        install(program, "#!/bin/sh\nexit 3\n")
        expected = f"upgrade: the new master ({program}) exited with status 3 before serving; this master goes on serving"
    assert upgrade_failure_line(b).endswith(expected), b.stderr()
    assert successor_pid(b) == b.pid
    with h.connect(b.port) as c:
        assert echo_roundtrip(c, b"still served") == b"still served"


def kill_running(program):
    """SIGKILLs every process whose command line names `program` (a test's own copy)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            if os.fsencode(str(program)) in args:
                os.kill(int(entry), signal.SIGKILL)
        except OSError:
            continue


def test_a_stop_during_an_upgrade_gives_the_upgrade_up(start_balance, backends, tmp_path):
    """`balance -c kill` while SIGUSR2 waits for a new master that does not start (here: it
    waits on a fifo nobody opens, as a start stuck resolving names would): the stop wins at
    once, the new master is killed before it served, the old one stops gracefully (exit 0) and
    nothing is left listening. (Before: the master heeded no stop signal until its 30 s wait
    for the report ended, so kill escalated to SIGKILL, cutting every connection, and the new
    program kept the listening socket.)"""
    b, program, _ = installed_copy(start_balance, backends, tmp_path, opts=["--grace", "1"])
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    install(program, f'#!/bin/sh\nread go < "{gate}"\nexec "{h.BALANCE_BIN}" "$@"\n')
    try:
        b.proc.send_signal(signal.SIGUSR2)
        h.wait_for(lambda: "SIGUSR2: starting a new master" in b.stderr(), 10, "the upgrade to begin")
        r = b.ctl("kill", timeout=60)
        rc = b.wait_exit(30)
        left = h.listening_pids(b.port)
    finally:
        kill_running(program)  # the new program, if left (it starts with SIGTERM blocked)
    assert r.rc == 0 and r.stdout == "shutdown complete, exiting.\n", r
    assert rc == 0, f"the master ended with {rc}; stderr:\n{b.stderr()}"
    assert left == [], "the new program still holds the listening socket"
    assert "upgrade: cancelled by a stop signal before the new master served; it was killed" in b.stderr()


def test_an_upgrade_without_descriptors_to_spare_says_so(start_balance, backends):
    """SIGUSR2 when the master has only 3 or 4 descriptors left (enough for the report pipe, not
    for the copies of the listener, the table and the pipe the new master needs): the upgrade
    fails with that reason in one line and the master serves on, its live connections too.
    (Before: the new master was started with a copy missing, took itself for a first start,
    failed, and the log blamed it: "exec ... failed or timed out".)"""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, args=["--threads", "1", str(port), srv.address], start=False)
    b.cmd = ["prlimit", "--nofile=40:40", *b.cmd]
    b.start()
    pid = h.listening_pids(port)[0]
    live = []
    try:
        for _ in range(20):  # each live connection takes two descriptors: the client's and the backend's
            if 40 - h.fd_count(pid) < 5:
                break
            c = h.connect(port)
            live.append(c)
            assert echo_roundtrip(c, b"x") == b"x"
        assert 40 - h.fd_count(pid) in (3, 4), h.fd_count(pid)
        line = upgrade_failure_line(b)
        assert line.endswith("upgrade: cannot copy descriptors for the new master: Too many open files; "
                             "this master goes on serving"), line
        assert h.listening_pids(port) == [pid]
        for c in live:
            assert echo_roundtrip(c, b"y") == b"y"
    finally:
        for c in live:
            c.close()
