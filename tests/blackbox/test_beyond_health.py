"""Active health checks (--check/--rise/--fall, issue 6), seen from clients and from the log:
a dead backend is dropped and readmitted by the checks, and health never overrides a hand
`disable`."""

import os
import re
import socket

import harness as h

CHECKS = ["--check", "1", "--fall", "2", "--rise", "2", "-t", "1"]


def names_of(port, n):
    """The backend names that n sequential clients of `port` are connected to."""
    return [h.ask_name(port) for _ in range(n)]


def health_re(group, channel, port, state):
    """The log line the checker writes when channel (group, channel) on `port` turns `state`."""
    return re.compile(rf"health: group {group} channel {channel} \(127\.0\.0\.1:{port}\) is {state} after ")


def show_rows(bal):
    """`show` rows as dicts (group, channel, state, totalc), whatever optional columns follow."""
    return show_rows_of(bal.ctl("show"))


def show_rows_of(r):
    """The rows of the result `r` of a `show` command, as show_rows() gives them."""
    assert r.rc == 0, r.stderr
    rows = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 11 and parts[0].isdigit():
            rows.append(dict(grp=int(parts[0]), ch=int(parts[2]), state=parts[3], totalc=int(parts[7]),
                             extra=parts[11:]))
    return rows


def test_killed_backend_is_dropped_and_readmitted(start_balance, backends):
    """A backend that dies is marked down after 2 failed checks; from then on every client is
    served by the other channel without error. Restarted, it is marked up after 2 good checks
    and takes its turns again."""
    a = h.NameServer("a")
    b = backends(h.NameServer("b"))
    a_port = a.port
    port = h.free_port()
    bal = start_balance(port, [a.address, b.address], opts=CHECKS)
    assert sorted(names_of(port, 2)) == ["a", "b"]

    a.close()
    down = health_re(0, 0, a_port, "down")
    h.wait_for(lambda: down.search(bal.stderr()), 20, "the log line marking channel 0 down")
    # Marked down: no client tries it any more, so none waits for a refused connect or fails.
    assert names_of(port, 20) == ["b"] * 20
    assert not health_re(0, 1, b.port, "down").search(bal.stderr())

    backends(h.NameServer("a", port=a_port))
    up = health_re(0, 0, a_port, "up")
    h.wait_for(lambda: up.search(bal.stderr()), 20, "the log line marking channel 0 up again")
    # Readmitted: sequential clients alternate over both channels again.
    names = names_of(port, 6)
    assert names in (["a", "b"] * 3, ["b", "a"] * 3), names
    assert bal.alive()


def test_hand_disabled_channel_stays_disabled_while_healthy(start_balance, backends):
    """A channel disabled by hand stays disabled while the checks keep finding it healthy:
    clients never reach it, until it is enabled by hand."""
    a = backends(h.NameServer("a"))
    b = backends(h.NameServer("b"))
    port = h.free_port()
    bal = start_balance(port, [a.address, b.address], opts=["--check", "1", "--rise", "1", "--fall", "2"])
    r = bal.ctl("disable 1")
    assert r.rc == 0 and r.stdout.strip() == "channel 1 disabled", r
    totalc = show_rows(bal)[1]["totalc"]

    # The checker probes b by connecting to it; three more probes mean three more verdicts that
    # it is healthy, each a chance to (wrongly) re-enable it.
    probes = b.connection_count()
    h.wait_for(lambda: b.connection_count() >= probes + 3, 20, "three more health checks of channel 1")
    assert names_of(port, 10) == ["a"] * 10
    rows = show_rows(bal)
    assert rows[1]["state"] == "dis"
    assert rows[1]["totalc"] == totalc  # no client was sent to it
    assert "up" in rows[1]["extra"] and "down" not in rows[1]["extra"]  # healthy all along
    assert "is down" not in bal.stderr()

    r = bal.ctl("enable 1")
    assert r.rc == 0 and r.stdout.strip() == "channel 1 enabled", r
    assert sorted(names_of(port, 4)) == ["a", "a", "b", "b"]


def served_and_held(port):
    """A new client that balance serves (a byte echoed through it), kept open; None when it is
    shed (refused, closed or reset)."""
    try:
        s = h.connect(port, timeout=10)
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    try:
        s.sendall(b"x")
        s.settimeout(h.scaled(5))
        if s.recv(1) == b"x":
            return s
    except OSError:
        pass
    s.close()
    return None


def test_out_of_descriptors_is_no_verdict_on_the_channels(start_balance, backends):
    """When balance itself runs out of descriptors, the checks it cannot make mark no channel
    down (with --fall 1 a single failed check would): the log says why no check is made, the
    channel stays up, and once descriptors free up the next client is served."""
    echo = backends(h.EchoServer())
    port = h.free_port()
    bal = start_balance(port, [echo.address], start=False,
                        opts=["--threads", "1", "--check", "1", "--fall", "1", "--rise", "1"])
    bal.cmd = ["prlimit", "--nofile=32:32", "--"] + bal.cmd  # prlimit execs: the same pid
    bal.start()
    held = []
    try:
        for _ in range(32):  # each served client takes two descriptors: the limit comes first
            s = served_and_held(port)
            if s is None:
                break
            held.append(s)
        else:
            raise AssertionError("32 clients served under a limit of 32 descriptors")
        starved = "health: cannot make checks (Too many open files)"
        h.wait_for(lambda: starved in bal.stderr() or " is down " in bal.stderr(), 20,
                   "a check at the descriptor limit")
        assert " is down " not in bal.stderr(), bal.stderr()
    finally:
        for s in held:
            s.close()
    assert show_rows(bal)[0]["extra"] == ["up"]
    h.wait_for(lambda: served_and_held(port), 10, "a client served after descriptors freed up").close()


def test_a_check_under_way_at_assign_counts_for_nothing(start_balance, backends):
    """A check of a channel's old address still under way when `assign` gives it a new one (a
    connect to a black hole, waiting for the -t timeout) is no verdict on the new address: the
    channel is not marked down (with --fall 1 one failed check would), and its new address is
    checked from the next check on."""
    hole = backends(h.BlackholeServer())
    live = backends(h.NameServer("live"))
    port = h.free_port()
    bal = start_balance(port, [hole.address], opts=["--check", "1", "--fall", "1", "--rise", "1", "-t", "10"])
    h.wait_for(lambda: any(s.state == "SYN_SENT" and s.remote[1] == hole.port for s in bal.sockets()), 10,
               "a check of the black hole under way")
    host, live_port = live.address.rsplit(":", 1)
    for cmd, reply in (("disable 0", "channel 0 disabled"), (f"assign 0 {host} {live_port}", "channel reassigned"),
                       ("enable 0", "channel 0 enabled")):
        r = bal.ctl(cmd)
        assert r.stdout.strip() == reply, r
    live.wait_connections(1, 20)  # the first check of the new address
    assert not health_re(0, 0, live.port, "down").search(bal.stderr()), bal.stderr()
    assert " is down " not in bal.stderr(), bal.stderr()
    assert show_rows(bal)[0]["extra"] == ["up"]
    assert h.ask_name(port) == "live"


def test_a_channel_gone_with_a_truncated_segment_is_no_longer_checked(start_balance, backends):
    """Another process truncates the control segment, and balance writes its table anew from
    the command line: a channel created at run time is gone. The checker stops checking it --
    it does not probe an empty address and log that a channel that does not exist is down
    (with --fall 1 one failed check would) -- and goes on checking the channels that remain."""
    a = backends(h.NameServer("a"))
    b = backends(h.NameServer("b"))
    created = backends(h.NameServer("created"))
    port = h.free_port()
    bal = start_balance(port, [a.address, b.address], opts=["-M", "--check", "1", "--fall", "1", "--rise", "1"])
    ctl = lambda cmd: h.ctl(port, cmd, rundir=bal.rundir, extra_args=["-M"])  # noqa: E731
    assert ctl(f"create 127.0.0.1 {created.port}").stdout == "channel created\n"
    assert ctl("enable 2").stdout == "channel 2 enabled\n"
    created.wait_connections(1)  # checked

    os.truncate(h.segment_path(port, bal.rundir, True), 0)
    try:  # the first to touch the table finds it cut off; this client may be closed
        h.ask_name(port)
    except (AssertionError, OSError):
        pass
    h.wait_for(lambda: "the control segment was truncated by another process" in bal.stderr(), 10,
               "the master's log line")
    # Three more checks of a: two whole intervals, each with a turn of the gone channel's check.
    probes = a.connection_count()
    h.wait_for(lambda: a.connection_count() >= probes + 3, 20, "three more checks of channel 0")
    assert "health: group 0 channel 2" not in bal.stderr(), bal.stderr()
    assert " is down " not in bal.stderr(), bal.stderr()
    assert [r["extra"] for r in show_rows_of(ctl("show"))] == [["up"], ["up"]]


def test_a_timeout_as_long_as_the_interval_skips_no_check(start_balance, backends):
    """With -t equal to --check, a check that times out ends as the next one is due, and that
    one goes ahead: a black-holed channel gets a check every interval, as many as a live channel
    gets over the same time, not one every other interval (detection twice as slow)."""
    hole = backends(h.BlackholeServer())
    live = backends(h.NameServer("live"))
    port = h.free_port()
    # Channel 8's checks are half an interval after channel 0's: the counts below do not hang on
    # which of two checks due at about the same time is seen first.
    dead = [hole.address] + [h.channel(h.closed_port()) for _ in range(7)]
    bal = start_balance(port, dead + [live.address], opts=["--check", "1", "-t", "1", "--fall", "1000"])
    checks = set()  # local ports of balance's connects to the black hole: one per check
    start = live.connection_count()

    def six_checks_of_live():
        checks.update(s.local[1] for s in bal.sockets() if s.state == "SYN_SENT" and s.remote[1] == hole.port)
        return live.connection_count() >= start + 6

    h.wait_for(six_checks_of_live, 30, "six checks of the live channel")
    # A connect to the black hole stays unanswered for its whole second: each one is seen.
    assert len(checks) >= 5, f"{len(checks)} checks of the black-holed channel while the live one had 6"
