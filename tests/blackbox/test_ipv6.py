"""IPv6 and dual stack: -b ::1, [::1]:PORT backends, IPv4 clients on the default listener."""

import socket

import pytest

import harness as h

pytestmark = pytest.mark.skipif(not h.have_ipv6(), reason="no IPv6 on loopback")


def test_ipv6_listener_and_ipv6_backend(start_balance, backends):
    """`-b ::1` with a `[::1]:PORT` channel: an IPv6 client reaches the IPv6 backend, IPv4 is not served."""
    srv = backends(h.NameServer("six", family=socket.AF_INET6))
    port = h.free_port()
    start_balance(port, [srv.address], opts=["-b", "::1"], listen_address="::1")
    assert h.ask_name(port, socket.AF_INET6) == "six"
    assert h.ask_name(port, socket.AF_INET6) == "six"
    with pytest.raises(ConnectionRefusedError):
        h.connect(port, socket.AF_INET)


def test_default_listener_is_dual_stack(start_balance, backends):
    """Without -b, balance serves IPv4 and IPv6 clients on the same port."""
    srv = backends(h.NameServer("four"))
    port = h.free_port()
    start_balance(port, [srv.address])
    assert h.ask_name(port, socket.AF_INET) == "four"
    assert h.ask_name(port, socket.AF_INET6) == "four"


def test_ipv4_client_to_ipv6_backend(start_balance, backends):
    """An IPv4 client on the default listener is forwarded to an IPv6 backend, data intact."""
    srv = backends(h.NameServer("six", family=socket.AF_INET6))
    port = h.free_port()
    start_balance(port, [srv.address])
    with h.connect(port, socket.AF_INET) as c:
        assert h.recv_until(c, b"\n") == b"six\n"
        c.sendall(b"through")
        assert h.recv_exact(c, 7) == b"through"


def test_mixed_family_round_robin(start_balance, backends):
    """IPv4 and IPv6 channels in one group alternate like any others."""
    four = backends(h.NameServer("four"))
    six = backends(h.NameServer("six", family=socket.AF_INET6))
    port = h.free_port()
    start_balance(port, [four.address, six.address])
    got = [h.ask_name(port, fam) for fam in (socket.AF_INET6, socket.AF_INET) * 2]
    assert got == ["four", "six"] * 2


def test_ipv4_bind_refuses_ipv6_clients(start_balance, backends):
    """`-b 127.0.0.1` listens on IPv4 only."""
    srv = backends(h.NameServer("four"))
    port = h.free_port()
    start_balance(port, [srv.address], opts=["-b", "127.0.0.1"], listen_address="127.0.0.1")
    assert h.ask_name(port, socket.AF_INET) == "four"
    with pytest.raises(ConnectionRefusedError):
        h.connect(port, socket.AF_INET6)


def test_v4_mapped_bind_address(start_balance, backends):
    """`-b ::ffff:127.0.0.1` (an IPv4 address in IPv6 notation) serves IPv4 clients."""
    srv = backends(h.NameServer("four"))
    port = h.free_port()
    start_balance(port, [srv.address], opts=["-b", "::ffff:127.0.0.1"])
    assert h.ask_name(port, socket.AF_INET) == "four"


@pytest.mark.parametrize("written", ["::1", "[::1]"])
def test_create_and_assign_take_ipv6_as_written_on_the_command_line(start_balance, backends, written):
    """`create` and `assign` take an IPv6 address bare or in brackets (the command line's form),
    and the channel they make serves IPv6."""
    four = backends(h.NameServer("four"))
    six = backends(h.NameServer("six", family=socket.AF_INET6))
    other = backends(h.NameServer("other", family=socket.AF_INET6))
    port = h.free_port()
    b = start_balance(port, [four.address])
    assert b.ctl(f"create {written} {six.port}").stdout == "channel created\n"
    assert b.ctl(f"assign 1 {written} {other.port}").stdout == "channel reassigned\n"
    assert b.ctl("enable 1").stdout == "channel 1 enabled\n"
    assert b.ctl("disable 0").stdout == "channel 0 disabled\n"
    rows = h.parse_show(b.ctl("show").stdout)
    assert (rows[1]["addr"], rows[1]["port"], rows[1]["state"]) == ("::1", other.port, "ENA")
    assert h.ask_name(port) == "other"
    for bad in ("[127.0.0.1]", "[::1", "[no.such.host.invalid]"):
        assert b.ctl(f"create {bad} {six.port}").stdout == "invalid address\n", bad
