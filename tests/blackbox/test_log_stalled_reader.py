"""A log reader that stops reading never stalls the proxy (docs/OBSERVABILITY.md, "A log reader
that falls behind never stalls the proxy"): balance -f with -d --log-conns, its stderr a pipe
that nobody reads, serves every connection; the lines that did not fit in the log queue are
dropped, and reading the pipe afterwards shows the "N log lines dropped" line; /metrics counts
them. The same with a syslog reader that has stopped."""

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.request

import pytest

import harness as h

DROPPED = re.compile(r"^balance: (\d+) log lines dropped \(the log reader was not keeping up\)$", re.M)
CONN = re.compile(r"^conn client=\S+ group=0 channel=0 .* end=client-closed$", re.M)

# -d and --log-conns write about 450 bytes of log per connection here: 4000 connections are
# about twice what the log queue (1 MiB) and the pipe (shrunk to a page below) hold together.
CONNECTIONS = 4000


class PipeReader:
    """Reads the pipe in a thread once start() is called; text() is what was read so far."""

    def __init__(self, fd):
        self.fd = fd
        self.chunks = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.chunks.append(data)

    def text(self):
        with self.lock:
            return b"".join(self.chunks).decode(errors="replace")


def echo_every_connection(port, count, while_what):
    """`count` connections one after another, each an echoed exchange and a half-close answered
    by the end of stream; fails naming the first one that did not go through."""
    for i in range(count):
        payload = b"ping%d" % i
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=h.scaled(5)) as c:
                c.settimeout(h.scaled(5))
                c.sendall(payload)
                assert h.recv_exact(c, len(payload), timeout=h.scaled(5)) == payload
                c.shutdown(socket.SHUT_WR)
                h.recv_until_eof(c, timeout=h.scaled(5))
        except (OSError, AssertionError) as e:
            raise AssertionError(f"connection {i} of {count} failed while {while_what}: {e!r}") from None


def test_a_stalled_stderr_reader_never_stalls_connections(backends, rundir):
    srv = backends(h.EchoServer())
    port, metrics_port = h.free_port(), h.free_port()
    r, w = os.pipe()
    fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)  # full after a few lines
    proc = subprocess.Popen([h.BALANCE_BIN, "-f", "-d", "--log-conns", "--metrics",
                             f"127.0.0.1:{metrics_port}", str(port), srv.address],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w,
                            env=h._env(rundir, None), start_new_session=True)
    os.close(w)
    reader = PipeReader(r)
    try:
        h.wait_for(lambda: proc.poll() is not None or h.is_listening(proc.pid, port), 15,
                   "balance to listen")
        assert proc.poll() is None, f"balance exited with {proc.returncode}"

        # Nobody reads stderr: every connection must still be served, promptly.
        echo_every_connection(port, CONNECTIONS, "nobody read the log")

        # Reading the log again: the queued lines come out, then the count of those dropped.
        reader.start()
        text = h.wait_for(lambda: (t := reader.text()) and DROPPED.search(t) and t, 30,
                          "the 'log lines dropped' line")
        dropped = sum(int(n) for n in DROPPED.findall(text))
        assert 0 < dropped
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=h.scaled(10)) as res:
            exposition = res.read().decode()
        counted = re.search(r"^balance_log_lines_dropped_total (\d+)$", exposition, re.M)
        assert counted and int(counted.group(1)) >= dropped, exposition[-500:]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/status.json", timeout=h.scaled(10)) as res:
            assert json.load(res)["log_lines_dropped_total"] >= dropped
        # The log works again: a new connection's line follows the report.
        with socket.create_connection(("127.0.0.1", port), timeout=h.scaled(5)) as c:
            me = "%s:%d" % c.getsockname()[:2]
            c.sendall(b"after")
            assert h.recv_exact(c, 5) == b"after"
            c.shutdown(socket.SHUT_WR)
            h.recv_until_eof(c)
        # (4000 connections reuse client ports: only a line after the last report is this one's.)
        text = h.wait_for(lambda: (t := reader.text()) and t.rfind(f"conn client={me} ") > t.rfind("log lines dropped")
                          and t, 15, "the line of a connection made after the drops")
        for line in text.splitlines():  # whole lines only, whatever was dropped
            assert not line.startswith("conn ") or CONN.match(line), line
    finally:
        if reader.thread.ident is None:
            reader.start()  # lets an old, blocked balance finish its writes and stop
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=h.scaled(10))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        reader.thread.join(timeout=10)
        os.close(r)
    h.assert_no_sanitizer_report(reader.text())
    assert proc.returncode == 0, f"balance exited with {proc.returncode}; stderr:\n{reader.text()[-3000:]}"


def test_a_stopped_syslog_reader_never_stalls_connections(backends, tmp_path):
    """The same for syslog: a daemon with --log-conns whose syslog reader has stopped (its
    datagram socket full after net.unix.max_dgram_qlen lines, so that syslog(3) blocks) serves
    every connection. Run in a private mount namespace whose /dev is a tmpfs with /dev/null and
    /dev/log, the latter a socket of this test's that is not read until the end."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private /dev/log")
    srv = backends(h.EchoServer())
    port = h.free_port()
    rundir = str(tmp_path / "run")
    log_path = str(tmp_path / "log")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(log_path)
    script = ("mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && "
              f"ln -s {log_path} /dev/log && exec {h.BALANCE_BIN} -M --log-conns {port} {srv.address}")
    try:
        with tempfile.TemporaryFile() as err:
            rc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=h._env(rundir, None), timeout=h.scaled(30)).returncode
            err.seek(0)
            if rc != 0 and b"unshare" in err.read():
                pytest.skip("no private mount namespace here")
        assert rc == 0
        echo_every_connection(port, 100, "syslog was not read")  # ten times the socket's queue
        # Reading syslog again: the lines come out.
        sink.settimeout(h.scaled(10))
        lines = [sink.recv(65536).decode(errors="replace") for _ in range(20)]
        assert sum("balance" in line and "conn client=" in line for line in lines) >= 10, lines
    finally:
        h.run(["-M", "-c", "kill", str(port)], rundir=rundir, timeout=30)
        sink.close()
