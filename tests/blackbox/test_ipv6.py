"""IPv6 and dual stack: -b ::1, [::1]:PORT backends, IPv4 clients on the default listener."""

import os
import shutil
import socket
import subprocess

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


def test_link_local_address_without_its_interface_is_refused(start_balance, backends, rundir):
    """fe80::1 without %interface cannot be connected to: the command line says so in one line
    (exit 65) instead of starting a channel whose every connect fails; `create` and `assign`
    refuse it as an invalid address. A bare scoped address gets the bracket hint."""
    port = h.free_port()
    res = h.run(["-f", port, "[fe80::1]:80"], rundir=rundir, timeout=5)
    assert (res.rc, res.stdout, res.stderr) == (
        65, "", "link-local address [fe80::1] needs its interface: [fe80::1%<interface>]:80\n")
    res = h.run(["-f", port, "fe80::1%lo"], rundir=rundir, timeout=5)
    assert (res.rc, res.stderr) == (64, "invalid channel [fe80::1%lo]: IPv6 addresses go in brackets: [fe80::1%lo]\n")
    res = h.run(["-f", port, "fe80::1%lo:80"], rundir=rundir, timeout=5)
    assert (res.rc, res.stderr) == (
        64, "invalid channel [fe80::1%lo:80]: IPv6 addresses go in brackets: [fe80::1%lo]:80\n")
    srv = backends(h.NameServer("four"))
    b = start_balance(port, [srv.address])
    assert b.ctl("disable 0").stdout == "channel 0 disabled\n"
    for cmd in ("create fe80::1 80", "create [fe80::1] 80", "assign 0 fe80::1 80"):
        assert b.ctl(cmd).stdout == "invalid address\n", cmd
    rows = h.parse_show(b.ctl("show").stdout)
    assert [(r["addr"], r["port"]) for r in rows] == [("127.0.0.1", srv.port)]


def _can_replace_etc_hosts() -> bool:
    """True if a private mount namespace can bind-mount a file over /etc/hosts (root, unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=h.scaled(10))
    return r.returncode == 0


def test_channel_name_with_both_addresses_is_reached_over_ipv4(backends, tmp_path):
    """A channel named by a host name that has both an IPv6 and an IPv4 address (as `localhost`
    has in Debian's /etc/hosts, ::1 sorted first) is its IPv4 address, as in the classic tool and
    as `create` takes the same name: a backend listening on IPv4 only is reached. A name with
    only ::1 stays ::1, on the command line and in `create`."""
    if not _can_replace_etc_hosts():
        pytest.skip("needs root and unshare to give balance its own /etc/hosts")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 dual.test\n127.0.0.1 dual.test\n::1 six.test\n")
    four = backends(h.NameServer("four"))
    six = backends(h.NameServer("six", family=socket.AF_INET6))
    port = h.free_port()
    # unshare and sh exec balance: the pid Balance watches is balance's.
    own_hosts = ["unshare", "-m", "sh", "-c", f'mount --bind "{hosts}" /etc/hosts && exec "$@"', "sh"]
    b = h.Balance(port, args=[str(port), f"dual.test:{four.port}", f"six.test:{six.port}"], start=False)
    b.cmd = own_hosts + b.cmd
    backends(b)
    b.start()
    create = subprocess.run(own_hosts + [h.BALANCE_BIN, "-c", f"create six.test {six.port}", str(port)],
                            env=dict(os.environ, BALANCE_RUNDIR=b.rundir), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=h.scaled(20))
    assert (create.returncode, create.stdout) == (0, "channel created\n"), create.stderr
    rows = h.parse_show(b.ctl("show").stdout)
    assert [(r["addr"], r["port"]) for r in rows] == [("127.0.0.1", four.port), ("::1", six.port), ("::1", six.port)]
    assert [h.ask_name(port) for _ in range(2)] == ["four", "six"]
