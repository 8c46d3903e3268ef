"""Security points of issue 5 that a user can check from outside: the packet dump never writes
once balance is in the background, no shell is ever run, and over-long input is refused with a
bounded message. (Owner-only control state: test_control_segment.py; forged segments:
test_control_segment.py and the fuzz_segment target.)"""

import os
import re
import signal
import socket

import harness as h
from faults_support import figure, io_wchar

MiB = 1 << 20


def push_through(port, n):
    """n bytes through balance to an echo backend and back."""
    data = os.urandom(n)
    with h.connect(port) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        assert h.recv_until_eof(c, 30) == data


def stop_daemon(port, rundir, pid):
    h.run(["-c", "kill", str(port)], rundir=rundir, timeout=30)
    try:
        h.wait_for(lambda: not h.pid_alive(pid), 15, "the daemon to exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise


def test_packet_dump_never_writes_in_the_background(start_balance, backends, rundir):
    """`balance -p` without -f: the daemon writes nothing while 1 MiB goes through each way
    (/proc/PID/io wchar counts every write(), the dump's way out; relaying uses send()). The same
    measure on `balance -fp` in the foreground shows the dump: over 2 MiB written."""
    echo = backends(h.EchoServer())
    fg = start_balance(h.free_port(), [echo.address], flags="-fp")
    before = io_wchar(fg.pid)
    push_through(fg.port, MiB)
    h.wait_for(lambda: io_wchar(fg.pid) - before >= 2 * MiB, 10, "the foreground dump")

    port = h.free_port()
    r = h.run(["-p", str(port), echo.address], rundir=rundir, timeout=30)
    assert r.rc == 0, r
    (pid,) = h.listening_pids(port)
    try:
        before = io_wchar(pid)
        push_through(port, MiB)
        written = io_wchar(pid) - before
    finally:
        stop_daemon(port, rundir, pid)
    figure("daemon_dump_bytes_written", written)
    assert written < 16 * 1024, f"the daemonized -p instance wrote {written} bytes"


SHELL_CALLS = re.compile(r"\b(system|popen|execl|execlp|execle|execv|execvp|execvpe|posix_spawnp?|fexecve)\s*\(|/bin/sh")


def test_no_shell_is_ever_run():
    """No source file runs a shell or another program: the one exec in src/ is the upgrade's
    execve of balance's own binary (src/master/upgrade.cpp), with an argument vector, no shell."""
    hits, execs = [], []
    for root, _, files in os.walk(os.path.join(h.REPO_ROOT, "src")):
        for name in files:
            path = os.path.join(root, name)
            with open(path, errors="replace") as f:
                for n, line in enumerate(f, 1):
                    code = line.split("//", 1)[0]
                    if SHELL_CALLS.search(code):
                        hits.append(f"{path}:{n}: {line.strip()}")
                    if re.search(r"\bexecve\s*\(", code):
                        execs.append((os.path.relpath(path, h.REPO_ROOT), code.strip()))
    assert not hits, hits
    assert execs and all(path == os.path.join("src", "master", "upgrade.cpp") and "execve(g_binary" in code
                         for path, code in execs), execs


def test_overlong_inputs_are_refused_with_bounded_messages(start_balance, backends):
    """Input lengths are bounded: a 5000-character -c command (exit 64), a 300-character host
    (exit 64), a 1 MiB control-shell line ("line too long", the shell goes on); every message
    stays one short line."""
    r = h.run(["-c", "x" * 5000, "8080"])
    first = r.stderr.splitlines()[0]
    assert r.rc == 64 and "longer than 4096 characters" in first and len(first) < 200, first[:300]
    r = h.run(["-f", str(h.free_port()), "h" * 300 + ":80"])
    assert r.rc == 64 and "host longer than 255 characters" in r.stderr, r.stderr[:500]
    assert len(r.stderr) < 400 and r.stderr.count("\n") == 1, r.stderr[:500]
    echo = backends(h.EchoServer())
    bal = start_balance(h.free_port(), [echo.address])
    r = h.run(["-i", str(bal.port)], rundir=bal.rundir, stdin_data=b"x" * MiB + b"\nshow\n", timeout=30)
    assert r.rc == 0 and "line too long\n" in r.stdout and len(h.parse_show(r.stdout)) == 1, r.stdout[-500:]
    assert len(r.stdout) < 4096
