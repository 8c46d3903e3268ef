"""Least connections (the `@` group separator, issue 6): long-held connections are spread by
the connections each channel holds, relative to its weight."""

import contextlib

import harness as h


@contextlib.contextmanager
def holding():
    """A list to which hold() appends open client connections; all closed on exit."""
    socks = []
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def hold(port, socks, n):
    """Opens n client connections one after the other and keeps them; returns the backend
    name each one reached (its greeting is read before the next connection is made)."""
    names = []
    for _ in range(n):
        s = h.connect(port)
        socks.append(s)
        names.append(h.recv_until(s, b"\n").decode().rstrip("\n"))
    return names


def test_held_connections_are_spread_evenly(start_balance, backends):
    """Ten long-held connections over two equal channels end up five and five."""
    a = backends(h.NameServer("a"))
    b = backends(h.NameServer("b"))
    port = h.free_port()
    start_balance(port, [a.address, b.address, "@"])
    with holding() as socks:
        names = hold(port, socks, 10)
        assert (names.count("a"), names.count("b")) == (5, 5), names


def test_new_connections_go_to_the_less_loaded_channel(start_balance, backends):
    """With channel a already holding 4 connections (made while b was disabled by hand), the
    next 4 go to b; after that they alternate."""
    a = backends(h.NameServer("a"))
    b = backends(h.NameServer("b"))
    port = h.free_port()
    bal = start_balance(port, [a.address, b.address, "@"])
    with holding() as socks:
        assert bal.ctl("disable 1").rc == 0
        assert hold(port, socks, 4) == ["a"] * 4
        assert bal.ctl("enable 1").rc == 0
        assert hold(port, socks, 4) == ["b"] * 4
        assert sorted(hold(port, socks, 2)) == ["a", "b"]


def test_weights_scale_the_connections_each_channel_holds(start_balance, backends):
    """With weights 1:3, twelve held connections end up 3 and 9."""
    a = backends(h.NameServer("a"))
    b = backends(h.NameServer("b"))
    port = h.free_port()
    start_balance(port, [f"{a.address}::1", f"{b.address}::3", "@"])
    with holding() as socks:
        names = hold(port, socks, 12)
        assert (names.count("a"), names.count("b")) == (3, 9), names


def test_ties_rotate(start_balance, backends):
    """Once each connection is over (balance holds no connection), every channel is tied at
    zero and the ties go round robin."""
    servers = [backends(h.NameServer(f"s{i}")) for i in range(3)]
    port = h.free_port()
    bal = start_balance(port, [s.address for s in servers] + ["@"])
    names = []
    for _ in range(6):
        names.append(h.ask_name(port))
        bal.wait_no_connections()
    assert names == ["s0", "s1", "s2"] * 2
