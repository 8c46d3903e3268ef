"""Process behaviour: daemon start (no -f) and a listening port already in use."""

import os
import signal

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
