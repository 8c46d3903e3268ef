"""Options of the classic command line not covered elsewhere: -B (outgoing source address),
-6 (IPv6 listening socket), and what -d traces."""

import socket

import pytest

import harness as h


def test_outgoing_bind_address(start_balance, backends):
    """With -B 127.0.0.2 the backend sees its connections come from 127.0.0.2 (loopback routes
    the whole 127/8), while without -B they come from 127.0.0.1."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    start_balance(port, [srv.address], opts=["-B", "127.0.0.2"])
    with h.connect(port) as c:
        c.sendall(b"x")
        assert h.recv_exact(c, 1) == b"x"
    assert srv.wait_connections(1)[0].peer[0] == "127.0.0.2"

    plain = backends(h.EchoServer())
    port2 = h.free_port()
    start_balance(port2, [plain.address])
    with h.connect(port2) as c:
        c.sendall(b"y")
        assert h.recv_exact(c, 1) == b"y"
    assert plain.wait_connections(1)[0].peer[0] == "127.0.0.1"


def test_outgoing_bind_family_mismatch_fails_over(start_balance, backends):
    """An IPv4 -B cannot reach an IPv6 backend: that try fails and the client goes on to the
    next channel (an IPv4 one)."""
    if not h.have_ipv6():
        pytest.skip("no IPv6 on this machine")
    v6 = backends(h.NameServer("six", family=socket.AF_INET6))
    v4 = backends(h.NameServer("four"))
    port = h.free_port()
    start_balance(port, [f"[::1]:{v6.port}", "!", v4.address], opts=["-B", "127.0.0.1"])
    assert h.ask_name(port) == "four"


def test_outgoing_bind_v4_mapped_is_its_ipv4_address(start_balance, backends):
    """-B ::ffff:127.0.0.2 (an IPv4 address in IPv6 notation, as -b takes it) binds connections
    to an IPv4 channel to 127.0.0.2; so does -B 127.0.0.2 for a channel written [::ffff:127.0.0.1]."""
    srv = backends(h.EchoServer())
    for n, (bind, channel) in enumerate([("::ffff:127.0.0.2", srv.address),
                                         ("127.0.0.2", f"[::ffff:127.0.0.1]:{srv.port}")]):
        port = h.free_port()
        b = start_balance(port, [channel], opts=["-B", bind])
        with h.connect(port) as c:
            c.sendall(b"x")
            assert h.recv_exact(c, 1) == b"x", (bind, channel)
        assert srv.wait_connections(n + 1)[n].peer[0] == "127.0.0.2"
        assert "warning" not in b.stderr().lower()


def test_outgoing_bind_family_mismatch_is_warned_about(start_balance, backends):
    """-B of one address family with channels of the other: balance starts (the other channels
    work), but says at once which channels it can never reach, not only under -d."""
    v4 = backends(h.NameServer("four"))
    port = h.free_port()
    b = start_balance(port, [v4.address, "[::1]:81", "!", "[::1]:82"], opts=["-B", "127.0.0.1"])
    want = "-B 127.0.0.1 is IPv4 and cannot reach the IPv6 channel [::1]:81 (and 1 more); connections to them fail"
    h.wait_for(lambda: want in b.stderr(), 10, "the warning")
    assert h.ask_name(port) == "four"


def test_outgoing_bind_address_not_of_this_host_is_warned_about(start_balance, backends):
    """-B with an address this host does not have: balance starts (the address may come up
    later), but says at once why every connection will fail, not only under -d."""
    srv = backends(h.NameServer("a"))
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["-B", "192.0.2.1"])
    h.wait_for(lambda: "-B 192.0.2.1: Cannot assign requested address" in b.stderr(), 10, "the warning")
    assert b.alive()


def test_force_ipv6_listener(start_balance, backends):
    """-6 resolves -b as IPv6: `-6 -b 127.0.0.1` listens on an IPv6 socket bound to
    ::ffff:127.0.0.1, which IPv4 clients reach."""
    srv = backends(h.NameServer("a"))
    port = h.free_port()
    b = start_balance(port, [srv.address], opts=["-6", "-b", "127.0.0.1"])
    listeners = [s for s in b.sockets() if s.state == "LISTEN" and s.local[1] == port]
    assert listeners and all(s.family == socket.AF_INET6 for s in listeners), listeners
    assert all(s.local[0] == "::ffff:127.0.0.1" for s in listeners), listeners
    assert h.ask_name(port) == "a"


def test_debug_traces_configuration_connections_tries_and_failures(start_balance, backends):
    """-d writes the configuration at start, then for each client its tries (including a failed
    one, with the reason) and the channel it was connected to."""
    srv = backends(h.NameServer("up"))
    dead = h.closed_port()
    port = h.free_port()
    b = start_balance(port, [f"127.0.0.1:{dead}", srv.address], opts=["-d"])
    assert h.ask_name(port) == "up"
    h.wait_for(lambda: "connected to" in b.stderr(), 10, "the connection trace")
    err = b.stderr()
    # without -T the idle timeout is "never" (it said "0s", which reads as "at once")
    assert f"listening on all addresses port {port}, " in err and ", idle timeout never\n" in err
    assert f"group 0 (round-robin) channel 0: 127.0.0.1:{dead} maxc 0 weight 1" in err
    assert f"trying group 0 channel 0 (127.0.0.1:{dead})" in err
    assert f"connect to 127.0.0.1:{dead} (group 0 channel 0) failed: Connection refused" in err
    assert f"connected to {srv.address} (group 0 channel 1)" in err


def test_debug_trace_names_every_group_type_and_weight(start_balance, backends):
    """-d's configuration lines name each group's policy and each channel's limit and weight, as
    the command line gave them."""
    a, b_ = backends(h.NameServer("a")), backends(h.NameServer("b"))
    port = h.free_port()
    b = start_balance(port, [f"{a.address}:4:3", b_.address, "@", a.address, "%", b_.address], opts=["-d", "-T", "7"])
    h.wait_for(lambda: "group 2" in b.stderr(), 10, "the configuration trace")
    err = b.stderr()
    assert ", idle timeout 7s\n" in err
    assert f"group 0 (least-connections) channel 0: {a.address} maxc 4 weight 3" in err
    assert f"group 0 (least-connections) channel 1: {b_.address} maxc 0 weight 1" in err
    assert f"group 1 (hash) channel 0: {a.address} maxc 0 weight 1" in err
    assert f"group 2 (round-robin) channel 0: {b_.address} maxc 0 weight 1" in err
