"""Process behaviour: daemon start (no -f) and a listening port already in use."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

import harness as h


def stop_daemon(port, rundir):
    """Stops the daemon listening on `port`: `balance -c kill PORT`, else SIGTERM/SIGKILL by pid."""
    pids = h.listening_pids(port)
    res = h.run(["-c", "kill", str(port)], rundir=rundir, timeout=20)
    if res.rc == 0:
        try:
            h.wait_for(lambda: not any(h.pid_alive(p) for p in pids), 10, "daemon to exit after -c kill")
            return
        except AssertionError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        try:
            h.wait_for(lambda: not any(h.pid_alive(p) for p in pids), 10, "daemon to exit")
            return
        except AssertionError:
            continue


@pytest.mark.parametrize("foreground", [False, True], ids=["daemon", "foreground"])
def test_port_in_use_reports_error(binary, rundir, backends, foreground):
    """With its port already taken, balance reports the error on the terminal and exits non-zero."""
    srv = backends(h.NameServer("n"))
    holder = backends(h.PortHolder())
    args = (["-f"] if foreground else []) + [str(holder.port), srv.address]
    res = h.run(args, rundir=rundir, timeout=20)
    try:
        assert res.rc > 0, res
        assert res.stderr.strip(), "no error message on stderr"
        assert h.listening_pids(holder.port) == [os.getpid()]
    finally:
        if res.rc == 0:
            stop_daemon(holder.port, rundir)


def test_daemon_serves_when_launcher_returns(binary, rundir, backends):
    """Without -f the launching command exits 0 only once the daemon serves: a client connecting
    right after it returns is forwarded. The daemon is a separate process that stays running."""
    srv = backends(h.NameServer("daemon-backend"))
    port = h.free_port()
    res = h.run([str(port), srv.address], rundir=rundir, timeout=30)
    try:
        assert res.rc == 0, res
        assert h.ask_name(port, timeout=10) == "daemon-backend"
        pids = h.listening_pids(port)
        assert len(pids) == 1 and pids[0] != os.getpid()
        assert h.ask_name(port, timeout=10) == "daemon-backend"
    finally:
        stop_daemon(port, rundir)
    h.wait_for(lambda: not h.listening_pids(port), 15, "the daemon's listener to go away")


def test_a_daemon_keeps_no_descriptor_of_its_caller(binary, rundir, backends):
    """A descriptor the caller left open besides the standard three (a script's `3>&1`, the
    status pipe of whatever started it) is not held by the daemon: it would keep the caller's
    pipe open for as long as balance runs, as a standard stream would (daemon(7))."""
    srv = backends(h.NameServer("n"))
    port = h.free_port()
    read_end, write_end = os.pipe()
    pipe = f"pipe:[{os.fstat(write_end).st_ino}]"
    try:
        with tempfile.TemporaryFile() as err:
            rc = subprocess.run([h.BALANCE_BIN, str(port), srv.address], env=h._env(rundir, None),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                pass_fds=(write_end,), timeout=h.scaled(30)).returncode
            err.seek(0)
            assert rc == 0, err.read()
        pids = h.listening_pids(port)
        assert len(pids) == 1 and pids[0] != os.getpid()
        fd_dir = f"/proc/{pids[0]}/fd"
        held = [fd for fd in os.listdir(fd_dir) if os.readlink(os.path.join(fd_dir, fd)) == pipe]
        assert held == [], f"the daemon holds the caller's pipe as descriptor(s) {held}"
    finally:
        os.close(read_end)
        os.close(write_end)
        stop_daemon(port, rundir)


def test_a_daemon_warns_about_a_missing_B_address_where_it_was_started(binary, rundir, backends):
    """The -B warning (an address this host does not have) reaches the terminal balance was
    started from, not only syslog: the daemon forks after it."""
    srv = backends(h.NameServer("n"))
    port = h.free_port()
    res = h.run(["-B", "192.0.2.1", str(port), srv.address], rundir=rundir, timeout=30)
    try:
        assert res.rc == 0, res
        assert "-B 192.0.2.1: Cannot assign requested address" in res.stderr, res
    finally:
        stop_daemon(port, rundir)


def test_a_daemon_with_a_relative_rundir_is_found_from_where_it_was_started(binary, backends):
    """BALANCE_RUNDIR=rel with -M: the daemon makes its table in ./rel of the directory it was
    started in (not /rel, after its chdir to /), so `-c show` from there finds it."""
    srv = backends(h.NameServer("n"))
    port = h.free_port()
    with tempfile.TemporaryDirectory() as cwd:
        env = h._env(None, {"BALANCE_RUNDIR": "rel"})

        def balance(*args):
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                rc = subprocess.run([h.BALANCE_BIN, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, timeout=h.scaled(30)).returncode
                out.seek(0)
                err.seek(0)
                return rc, out.read().decode(), err.read().decode()

        rc, _, err = balance("-M", str(port), srv.address)
        try:
            assert rc == 0, err
            assert os.path.exists(os.path.join(cwd, "rel", f"balance.{port}"))
            rc, out, err = balance("-M", "-c", "show", str(port))
            assert rc == 0 and f"{srv.address.rsplit(':', 1)[0]}" in out, (rc, out, err)
        finally:
            stop_daemon(port, os.path.join(cwd, "rel"))


def test_a_daemon_logs_to_syslog(binary, backends, tmp_path):
    """In the background balance logs to syslog (COMPAT.md): the -a notice that a channel must
    be re-enabled by hand at priority notice, the -d trace at priority debug, facility daemon.
    Run in a private mount namespace whose /dev/log is a socket of this test's."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private /dev/log")
    srv = backends(h.NameServer("x"))
    port = h.free_port()
    rundir = str(tmp_path / "run")
    log_path = str(tmp_path / "log")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(log_path)
    private_dev = "mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3"
    unshare = ["unshare", "-m", "--propagation", "private", "sh", "-c"]
    probe = subprocess.run(unshare + [private_dev], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=h.scaled(30))
    if probe.returncode != 0:
        pytest.skip(f"no private /dev here: {probe.stderr.decode(errors='replace').strip()}")
    script = (f"{private_dev} && ln -s {log_path} /dev/log && exec {h.BALANCE_BIN} -M -a -d {port} "
              f"{h.channel(h.closed_port())} {srv.address}")
    try:
        rc = subprocess.run(unshare + [script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            env=h._env(rundir, None), timeout=h.scaled(30)).returncode
        assert rc == 0
        assert h.ask_name(port) == "x"
        sink.settimeout(h.scaled(10))
        lines = []
        while not any("re-enable it by hand" in line for line in lines) or \
                not any("connected to" in line for line in lines):
            lines.append(sink.recv(65536).decode(errors="replace"))  # socket.timeout fails the test
        daemon_notice, daemon_debug = "<29>", "<31>"  # LOG_DAEMON | LOG_NOTICE, LOG_DAEMON | LOG_DEBUG
        assert [line[:4] for line in lines if "re-enable it by hand" in line] == [daemon_notice], lines
        assert all(line.startswith(daemon_debug) for line in lines if "connected to" in line), lines
        assert all(" balance[" in line for line in lines), lines
    finally:
        h.run(["-M", "-c", "kill", str(port)], rundir=rundir, timeout=30)
        sink.close()
