"""BALANCE_UPGRADE set by hand: the descriptors it names are only taken when they are what an
upgrade hands over. A master is started with a control segment left by a master killed with
SIGKILL (a descriptor of it passes the segment checks), a report pipe, and listening
descriptors of the test's choosing."""

import os
import signal
import socket
import subprocess

import harness as h


def stale_segment(rundir, port):
    """A descriptor of the control segment of an instance on `port` killed with SIGKILL."""
    b = h.Balance(port, ["127.0.0.1:9"], rundir=rundir)
    try:
        h.wait_for(lambda: os.path.exists(h.segment_path(port, rundir, False)), 15, "the control segment")
    finally:
        b.proc.kill()
        b.proc.wait(h.scaled(15))
    return os.open(h.segment_path(port, rundir, False), os.O_RDWR | os.O_CLOEXEC)


def start_inheriting(rundir, port, upgrade, fds, stderr_path, channel="127.0.0.1:9"):
    """balance -f PORT CHANNEL with BALANCE_UPGRADE=`upgrade`, the descriptors `fds` inherited."""
    env = dict(os.environ, BALANCE_RUNDIR=rundir, BALANCE_UPGRADE=upgrade)
    with open(stderr_path, "wb") as err:
        return subprocess.Popen([h.BALANCE_BIN, "-f", str(port), channel], env=env, pass_fds=fds,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def finish(proc):
    """The exit code of `proc`, stopped with SIGTERM if it still runs (killed if it hangs)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(h.scaled(15))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(h.scaled(15))
        raise AssertionError("balance did not stop on SIGTERM") from None


def read_report(fd):
    out = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        out += chunk


def test_an_inherited_descriptor_that_is_not_a_listening_socket_is_refused(rundir, tmp_path):
    """listen= naming a regular file, then a UDP socket: exit 71 with one line, and the same
    failure on the report pipe. (Both were taken as the listening socket: the master reported
    that it served, served no one, and logged "cannot watch the listening socket" several
    times a second.)"""
    port = h.free_port()
    seg = stale_segment(rundir, port)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    plain = os.open("/etc/hostname" if os.path.exists("/etc/hostname") else "/dev/null", os.O_RDONLY)
    try:
        for bad in (plain, udp.fileno()):
            r, w = os.pipe()
            err_path = str(tmp_path / f"stderr.{bad}")
            proc = start_inheriting(rundir, port, f"listen={bad},segment={seg},report={w}", [bad, seg, w], err_path)
            os.close(w)
            try:
                report = read_report(r)  # until the pipe closes: balance exited, or reported and went on
            finally:
                os.close(r)
                # A master that reported serving is stopped; one that failed exits by itself.
                rc = finish(proc) if report == b"0" else proc.wait(h.scaled(15))
            with open(err_path, errors="replace") as f:
                err = f.read()
            h.assert_no_sanitizer_report(err)
            assert rc == 71, (rc, report, err[-2000:])
            assert err.count("\n") == 1 and "is not a listening TCP socket" in err, err[-2000:]
            assert report.startswith(b"71\t") and b"is not a listening TCP socket" in report, report
    finally:
        os.close(seg)
        os.close(plain)
        udp.close()


def test_a_descriptor_named_twice_is_not_taken(rundir, tmp_path, backends):
    """metrics= naming the listening descriptor as well: not an upgrade's hand-over, so balance
    starts as a first master does, on its own port. (It took both: the master without --metrics
    closed its "metrics" descriptor, which was its listening socket, and served no one.)"""
    srv = backends(h.EchoServer())
    port = h.free_port()
    seg = stale_segment(rundir, port)
    other = socket.create_server(("127.0.0.1", 0))  # a listening socket on another port
    r, w = os.pipe()
    lfd = other.fileno()
    err_path = str(tmp_path / "stderr")
    env_value = f"listen={lfd},segment={seg},report={w},metrics={lfd}"
    proc = start_inheriting(rundir, port, env_value, [lfd, seg, w], err_path, srv.address)
    os.close(w)
    os.close(seg)
    try:
        h.wait_for(lambda: proc.poll() is not None or h.is_listening(proc.pid, port), 15,
                   "balance to listen on its own port")
        assert proc.poll() is None, f"balance exited with {proc.returncode}"
        with h.connect(port) as c:  # through its own listener to the channel of its command line
            c.sendall(b"hello")
            assert h.recv_exact(c, 5) == b"hello"
    finally:
        rc = finish(proc)
        os.close(r)
        other.close()
    with open(err_path, errors="replace") as f:
        err = f.read()
    h.assert_no_sanitizer_report(err)
    assert "cannot watch the listening socket" not in err, err[-2000:]
    assert rc == 0, (rc, err[-2000:])
