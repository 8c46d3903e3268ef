"""What balance tells systemd (Type=notify, NotifyAccess=main in dist/systemd/), heard on a
NOTIFY_SOCKET of the test's own with the sender's pid: READY=1 once it serves; on SIGUSR2
RELOADING=1, then READY=1 with the new master as MAINPID=, all from the process systemd knows
as the main one; STOPPING=1 from the master being stopped only; READY=1 after a failed upgrade;
a STATUS= line with each; with WatchdogSec= (WATCHDOG_USEC), WATCHDOG=1 from the main process
while every event loop answers."""

import ctypes
import os
import shutil
import signal
import socket
import struct

import pytest

import harness as h


class NotifySocket:
    """A unix datagram socket standing in for systemd's: recv() -> (sender pid, {field: value})."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.senders = set()  # every pid heard from

    def _read(self):
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, cred in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iii", cred[:12])[0]
                self.senders.add(pid)
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        return pid, fields

    def recv(self, timeout=10):
        self.sock.settimeout(h.scaled(timeout))
        try:
            return self._read()
        except socket.timeout:
            raise AssertionError(f"no notification within {h.scaled(timeout):.0f}s") from None

    def pending(self):
        """Every message already sent, without waiting (a datagram is queued when it is sent)."""
        out = []
        self.sock.setblocking(False)
        while True:
            try:
                out.append(self._read())
            except BlockingIOError:
                return out

    def close(self):
        self.sock.close()


def parent_pid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


@pytest.fixture
def notify(tmp_path):
    """The NotifySocket given to balance. At the end, any master that sent on it and is not a
    child of the test (one started by an upgrade), passed or failed, is killed."""
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()
    binary = os.path.realpath(h.BALANCE_BIN)
    for pid in sock.senders:
        try:
            ours = os.path.realpath(f"/proc/{pid}/exe") == binary  # not a recycled pid
        except OSError:
            continue
        if ours and parent_pid(pid) != os.getpid() and h.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_ready_reload_and_stop_come_from_the_main_process(start_balance, backends, notify):
    """READY=1 once the port and --metrics listen; SIGUSR2: RELOADING=1, then MAINPID=<new> and
    READY=1 in one message, both from the old master, nothing from the new one before it is
    the main process, and no STOPPING=1 from the old one as it drains; SIGTERM to the new
    master: STOPPING=1 from it. (Before: the new master's READY=1 came before MAINPID=, which
    systemd refuses under NotifyAccess=main; the old master sent STOPPING=1 after handing over;
    no RELOADING=1.)"""
    srv = backends(h.EchoServer())
    port, mport = h.free_port(), h.free_port()
    b = start_balance(port, [srv.address], ["--metrics", f"127.0.0.1:{mport}"],
                      env={"NOTIFY_SOCKET": notify.path})
    assert notify.recv() == (b.pid, {"READY": "1", "STATUS": f"serving port {port} (2 worker threads, "
                                                           f"metrics on 127.0.0.1:{mport})"})
    assert h.is_listening(b.pid, port) and h.is_listening(b.pid, mport), "READY=1 before serving"

    b.proc.send_signal(signal.SIGUSR2)
    pid, fields = notify.recv()
    assert pid == b.pid and fields.get("RELOADING") == "1" and int(fields["MONOTONIC_USEC"]) > 0, (pid, fields)
    pid, fields = notify.recv()
    assert pid == b.pid and set(fields) == {"MAINPID", "READY", "STATUS"} and fields["READY"] == "1", (pid, fields)
    assert fields["STATUS"].startswith(f"serving port {port} "), fields
    new = int(fields["MAINPID"])
    assert new != b.pid and h.pid_alive(new)
    assert h.is_listening(new, port) and h.is_listening(new, mport), "MAINPID= before the new master serves"

    assert b.wait_exit(30) == 0, "the old master did not drain and exit"
    assert notify.pending() == [], "messages after the hand-over"

    os.kill(new, signal.SIGTERM)
    assert notify.recv() == (new, {"STOPPING": "1",
                                   "STATUS": "stopping: open connections may finish for up to 30 s"})
    h.wait_for(lambda: not h.pid_alive(new), 15, "the new master to stop")


def test_a_failed_upgrade_ends_the_reload(start_balance, backends, notify, tmp_path):
    """SIGUSR2 when the program file no longer starts: RELOADING=1, then READY=1 without a new
    MAINPID=, and the master goes on serving. (Before: nothing at all was sent.)"""
    srv = backends(h.EchoServer())
    program = tmp_path / "balance"
    shutil.copy(h.BALANCE_BIN, program)
    port = h.free_port()
    b = start_balance(port, [srv.address], env={"NOTIFY_SOCKET": notify.path}, start=False)
    b.cmd[0] = str(program)
    b.start()
    pid, fields = notify.recv()
    assert (pid, fields["READY"]) == (b.pid, "1"), (pid, fields)
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    os.rename(broken, program)  # "installs" a program that fails at once

    b.proc.send_signal(signal.SIGUSR2)
    pid, fields = notify.recv()
    assert pid == b.pid and fields.get("RELOADING") == "1", (pid, fields)
    pid, fields = notify.recv(40)
    assert (pid, set(fields), fields["READY"]) == (b.pid, {"READY", "STATUS"}, "1"), (pid, fields)
    assert fields["STATUS"].startswith("upgrade: the new master ("), fields
    assert "exited with status 1 before serving" in fields["STATUS"], fields
    assert fields["STATUS"].endswith("; the running master goes on serving"), fields
    assert b.alive()
    with h.connect(port) as c:
        c.sendall(b"still served")
        assert h.recv_exact(c, 12) == b"still served"


# --- systemd's watchdog (WatchdogSec=): WATCHDOG=1 only while every event loop answers

PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
WALL = 0x40000000  # waitpid(): any child or traced thread


class StoppedThread:
    """Stops one thread of another process (not the others) with ptrace, until the end of the
    `with`: a stand-in for a thread stuck in a loop or a lock."""

    def __init__(self, tid):
        self.tid = tid
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

    def _ptrace(self, request):
        if self.libc.ptrace(request, self.tid, None, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"ptrace({request:#x}, {self.tid}): {os.strerror(err)}")

    def __enter__(self):
        self._ptrace(PTRACE_SEIZE)
        self._ptrace(PTRACE_INTERRUPT)
        _, status = os.waitpid(self.tid, WALL)
        assert os.WIFSTOPPED(status), status
        return self

    def __exit__(self, *exc):
        self._ptrace(PTRACE_DETACH)


def thread_named(pid, name):
    tids = [tid for tid, n in h.thread_names(pid).items() if n == name]
    assert len(tids) == 1, f"threads named {name!r} in {pid}: {tids}"
    return tids[0]


def recv_except_watchdog(notify, timeout=10):
    while True:
        pid, fields = notify.recv(timeout)
        if fields != {"WATCHDOG": "1"}:
            return pid, fields


def test_watchdog_pings_while_every_loop_answers(start_balance, backends, notify):
    """WATCHDOG_USEC set: WATCHDOG=1 from the master every half period; a worker thread that
    stops answering (stopped with ptrace) stops them, with one line in the log, until it runs
    again. The health checker's loop counts too. (Before: no watchdog at all, so a unit with
    WatchdogSec= killed balance after one period.)"""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], ["--check", "1"],
                      env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"})
    pid, fields = recv_except_watchdog(notify)
    assert (pid, fields["READY"]) == (b.pid, "1"), (pid, fields)
    for _ in range(3):
        assert notify.recv() == (b.pid, {"WATCHDOG": "1"})

    for n, name in enumerate(("worker 1", "health checks"), 1):
        with StoppedThread(thread_named(b.pid, name)):
            h.wait_for(lambda: b.stderr().count("an event loop has not answered for") == n, 15,
                       "the watchdog to notice")
            # The tick that noticed has sent no ping; none may follow while the thread is stopped.
            notify.pending()
            with pytest.raises(AssertionError, match="no notification"):
                notify.recv(2)
        assert notify.recv() == (b.pid, {"WATCHDOG": "1"})
        h.wait_for(lambda: b.stderr().count("every event loop answers again") == n, 15, "the watchdog to resume")
    with h.connect(port) as c:
        c.sendall(b"served")
        assert h.recv_exact(c, 6) == b"served"


def test_watchdog_pings_come_from_the_new_master_after_an_upgrade(start_balance, backends, notify):
    """systemd names the main process in WATCHDOG_PID; after SIGUSR2 the new master is the main
    process, so it pings (the old one stops at the hand-over). (Before the fix: the new master
    inherited WATCHDOG_PID=<old pid>, took the watchdog for another process's and never pinged,
    so systemd killed the service one period after every upgrade.)"""
    srv = backends(h.EchoServer())
    port = h.free_port()
    b = start_balance(port, [srv.address], env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"},
                      start=False)
    b.cmd = ["/bin/sh", "-c", 'export WATCHDOG_PID=$$; exec "$@"', "sh", *b.cmd]  # exec keeps the pid
    b.start()
    pid, fields = recv_except_watchdog(notify)
    assert (pid, fields["READY"]) == (b.pid, "1"), (pid, fields)
    assert notify.recv() == (b.pid, {"WATCHDOG": "1"})

    b.proc.send_signal(signal.SIGUSR2)
    pid, fields = recv_except_watchdog(notify)
    assert (pid, fields.get("RELOADING")) == (b.pid, "1"), (pid, fields)
    pid, fields = recv_except_watchdog(notify)
    assert pid == b.pid and "MAINPID" in fields, (pid, fields)
    new = int(fields["MAINPID"])
    assert notify.recv() == (new, {"WATCHDOG": "1"}), "no ping from the new master"
    assert b.wait_exit(30) == 0, "the old master did not drain and exit"
    for _ in range(3):
        assert notify.recv() == (new, {"WATCHDOG": "1"})
    assert b.pid not in {p for p, _ in notify.pending()}, "pings from the old master after the hand-over"
    os.kill(new, signal.SIGTERM)
    h.wait_for(lambda: not h.pid_alive(new), 15, "the new master to stop")


def test_watchdog_pings_go_on_while_a_new_master_starts(start_balance, backends, notify, tmp_path):
    """SIGUSR2 when the new program takes long to start (here it waits on a fifo nobody opens):
    the old master waits up to 30 s for its report, and pings systemd all along; a SIGTERM then
    gives the upgrade up. (Before: no ping during that wait, so a WatchdogSec= under 30 s
    killed the service for an upgrade that was only slow.)"""
    srv = backends(h.EchoServer())
    program = tmp_path / "balance"
    shutil.copy(h.BALANCE_BIN, program)
    port = h.free_port()
    b = start_balance(port, [srv.address], env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"},
                      start=False)
    b.cmd[0] = str(program)
    b.start()
    pid, fields = recv_except_watchdog(notify)
    assert (pid, fields["READY"]) == (b.pid, "1"), (pid, fields)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    slow = tmp_path / "slow"
    slow.write_text(f'#!/bin/sh\nread go < "{gate}"\nexec "{h.BALANCE_BIN}" "$@"\n')
    slow.chmod(0o755)
    os.rename(slow, program)

    b.proc.send_signal(signal.SIGUSR2)
    pid, fields = recv_except_watchdog(notify)
    assert (pid, fields.get("RELOADING")) == (b.pid, "1"), (pid, fields)
    for _ in range(3):
        assert notify.recv() == (b.pid, {"WATCHDOG": "1"}), "no ping while the new master starts"
    b.proc.send_signal(signal.SIGTERM)
    assert b.wait_exit(30) == 0
    assert "upgrade: cancelled by a stop signal" in b.stderr()
