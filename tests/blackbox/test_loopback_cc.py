"""--loopback-cc: the TCP congestion control of balance's sockets whose peer is on this host (a
listener's clients on this host, channels at loopback addresses), read from outside with
`ss -ti` on each socket of a proxied connection."""

import subprocess

import pytest

import harness as h


def available_ccs() -> set:
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
        return set(f.read().split())


def system_cc() -> str:
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        return f.read().strip()


def other_cc() -> str:
    """An algorithm every kernel has that is not the system's, so that a change shows."""
    return "cubic" if system_cc() == "reno" else "reno"


def cc_of(local: tuple, remote: tuple) -> str:
    """The congestion control `ss` shows for the established socket local -> remote."""
    out = subprocess.run(["ss", "-tinH", "state", "established", "src", f"{local[0]}:{local[1]}",
                          "dst", f"{remote[0]}:{remote[1]}"], capture_output=True, text=True,
                         timeout=h.scaled(10), check=True).stdout
    known = available_ccs()
    names = [word for word in out.split() if word in known]
    assert len(names) == 1, f"one socket {local} -> {remote} expected, ss said:\n{out}"
    return names[0]


def proxied(port, srv):
    """One connection through balance, an exchange done and held: the four sockets' ends as
    (client, balance's client side, balance's server side, server), each (local, remote)."""
    c = h.connect(port)
    c.sendall(b"x")
    assert h.recv_exact(c, 1) == b"x"
    client_end = c.getsockname()[:2]
    balance_out = srv.wait_connections(1)[-1].peer[:2]
    listen_end = ("127.0.0.1", port)
    server_end = ("127.0.0.1", srv.port)
    return c, {"client": (client_end, listen_end), "balance-client": (listen_end, client_end),
               "balance-server": (balance_out, server_end), "server": (server_end, balance_out)}


def ccs(ends) -> dict:
    return {name: cc_of(*pair) for name, pair in ends.items()}


def test_the_named_algorithm_on_both_of_balances_sockets(start_balance, backends):
    """With -b 127.0.0.1 and a channel at 127.0.0.1, both of balance's sockets of a connection
    have the algorithm named; the client's and the server's keep the system's."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    start_balance(port, [srv.address], opts=["-b", "127.0.0.1", "--loopback-cc", other_cc()])
    c, ends = proxied(port, srv)
    with c:
        assert ccs(ends) == {"client": system_cc(), "balance-client": other_cc(),
                             "balance-server": other_cc(), "server": system_cc()}


def test_default_cubic_on_a_listener_on_all_addresses_too(start_balance, backends):
    """By default cubic, and without -b as well: a listener on all addresses takes clients from
    anywhere, so the algorithm is set on each client socket whose peer is on this host (the
    listener's own would reach every client); the client and the server keep the system's."""
    if "cubic" not in available_ccs():
        pytest.skip("this kernel has no cubic")
    srv = backends(h.EchoServer())
    port = h.free_port()
    start_balance(port, [srv.address])
    c, ends = proxied(port, srv)
    with c:
        assert ccs(ends) == {"client": system_cc(), "balance-client": "cubic",
                             "balance-server": "cubic", "server": system_cc()}


def test_a_named_algorithm_on_a_listener_on_all_addresses(start_balance, backends):
    srv = backends(h.EchoServer())
    port = h.free_port()
    start_balance(port, [srv.address], opts=["--loopback-cc", other_cc()])
    c, ends = proxied(port, srv)
    with c:
        assert ccs(ends) == {"client": system_cc(), "balance-client": other_cc(),
                             "balance-server": other_cc(), "server": system_cc()}


def test_system_keeps_the_systems_algorithm(start_balance, backends):
    srv = backends(h.EchoServer())
    port = h.free_port()
    start_balance(port, [srv.address], opts=["-b", "127.0.0.1", "--loopback-cc", "system"])
    c, ends = proxied(port, srv)
    with c:
        assert set(ccs(ends).values()) == {system_cc()}


def test_an_algorithm_the_kernel_lacks_is_a_one_line_error(rundir):
    """Named on the command line, an algorithm balance cannot use stops the start: exit 71 (an
    operating system error), one line, nothing left listening."""
    port = h.free_port()
    r = h.run(["-f", "--loopback-cc", "no_such_cc", port, "127.0.0.1:9"], rundir=rundir)
    assert r.rc == 71, r
    assert r.stderr == "cannot use congestion control no_such_cc (--loopback-cc): No such file or directory, exiting.\n"
    assert h.listening_pids(port) == []
