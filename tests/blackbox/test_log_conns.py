"""--log-conns in the foreground: one line on stderr per finished connection, with the client's
address, group/channel, backend, duration, exact byte counts and how it ended, for each way a
connection can end."""

import re
import socket

import harness as h

LINE = re.compile(r"^conn client=(?P<client>\S+) group=(?P<group>\S+) channel=(?P<channel>\S+) "
                  r"backend=(?P<backend>\S+) duration_ms=(?P<duration_ms>\d+) sent=(?P<sent>\d+) "
                  r"rcvd=(?P<rcvd>\d+) end=(?P<end>\S+)$")


class Scripted(h._Server):
    """A backend that runs `script(conn, record)` on each accepted connection."""

    def __init__(self, script, **kw):
        self.script = script
        super().__init__(**kw)

    def handle(self, conn, rec):
        self.script(conn, rec)


def client_address(sock):
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def conn_line(balance, client, timeout=10):
    """The one --log-conns line of the connection from `client` (waits for it)."""
    def lines():
        found = [m for m in map(LINE.match, balance.stderr().splitlines()) if m and m["client"] == client]
        return found or None
    try:
        found = h.wait_for(lines, timeout, f"the --log-conns line of {client}")
    except AssertionError:
        raise AssertionError(f"no --log-conns line for {client}; stderr:\n{balance.stderr()[-3000:]}") from None
    assert len(found) == 1, found
    return found[0].groupdict()


def check(line, client, backend, sent, rcvd, end, group=0, channel=0):
    expected = dict(client=client, group=str(group), channel=str(channel), backend=backend, sent=str(sent),
                    rcvd=str(rcvd), end=end)
    assert {k: line[k] for k in expected} == expected
    return int(line["duration_ms"])


def test_client_closes_first(start_balance, backends):
    """The client ends its stream first, the backend follows: end=client-closed."""
    srv = backends(h.EchoServer())
    b = start_balance(h.free_port(), [srv.address], ["--log-conns"])
    with b.connect() as c:
        me = client_address(c)
        c.sendall(b"a" * 123)
        assert h.recv_exact(c, 123) == b"a" * 123
        c.shutdown(socket.SHUT_WR)
        assert h.recv_until_eof(c) == b""
    duration = check(conn_line(b, me), me, srv.address, 123, 123, "client-closed")
    assert duration < h.scaled(10) * 1000


def test_server_closes_first(start_balance, backends):
    """The backend ends its stream first (after a reply), the client follows: end=server-closed.
    The channel is the second of the second group, behind refused ones."""
    srv = backends(h.SinkServer(reply=4567, reply_when="start", half_close=True))
    dead = [f"127.0.0.1:{h.closed_port()}" for _ in range(2)]
    b = start_balance(h.free_port(), [dead[0], "!", dead[1], srv.address], ["--log-conns"])
    with b.connect() as c:
        me = client_address(c)
        assert len(h.recv_until_eof(c)) == 4567  # the reply, then the backend's end
        c.sendall(b"z" * 78)
        c.shutdown(socket.SHUT_WR)
        assert srv.wait_connections(1)[0].ended.wait(h.scaled(10))
    check(conn_line(b, me), me, srv.address, 78, 4567, "server-closed", group=1, channel=1)


def test_client_resets(start_balance, backends):
    """The client aborts with a RST: end=client-reset, with the bytes that went through."""
    srv = backends(h.EchoServer())
    b = start_balance(h.free_port(), [srv.address], ["--log-conns"])
    c = b.connect()
    me = client_address(c)
    c.sendall(b"r" * 50)
    assert h.recv_exact(c, 50) == b"r" * 50
    h.set_linger_reset(c)
    c.close()
    check(conn_line(b, me), me, srv.address, 50, 50, "client-reset")


def test_server_resets(start_balance, backends):
    """The backend aborts with a RST after replying: end=server-reset, and the client is reset."""
    def script(conn, rec):
        rec.received += h.recv_exact(conn, 100)
        conn.sendall(b"s" * 60)
        rec.received += h.recv_exact(conn, 1)  # the client has the reply: now abort
        h.set_linger_reset(conn)

    srv = backends(Scripted(script))
    b = start_balance(h.free_port(), [srv.address], ["--log-conns"])
    with b.connect() as c:
        me = client_address(c)
        c.sendall(b"q" * 100)
        assert h.recv_exact(c, 60) == b"s" * 60
        c.sendall(b"!")
        assert h.expect_closed(c) == "reset"
    check(conn_line(b, me), me, srv.address, 101, 60, "server-reset")


def test_idle_timeout(start_balance, backends):
    """A connection idle for -T seconds is closed by balance: end=idle-timeout, after >= 1 s."""
    srv = backends(h.EchoServer())
    b = start_balance(h.free_port(), [srv.address], ["--log-conns", "-T", "1"])
    with b.connect() as c:
        me = client_address(c)
        c.sendall(b"i" * 10)
        assert h.recv_exact(c, 10) == b"i" * 10
        assert h.expect_closed(c, timeout=10) == "eof"
    duration = check(conn_line(b, me), me, srv.address, 10, 10, "idle-timeout")
    assert duration >= 1000


def test_no_channel_answers(start_balance):
    """Every channel refuses: the client is closed and the line says end=no-channel, with no
    group, channel or backend."""
    dead = [f"127.0.0.1:{h.closed_port()}" for _ in range(3)]
    b = start_balance(h.free_port(), [dead[0], dead[1], "!", dead[2]], ["--log-conns"])
    with b.connect() as c:
        me = client_address(c)
        assert h.expect_closed(c) == "eof"
    line = conn_line(b, me)
    assert {k: line[k] for k in ("group", "channel", "backend", "sent", "rcvd", "end")} == dict(
        group="-", channel="-", backend="-", sent="0", rcvd="0", end="no-channel")


def test_shutdown_cuts_an_open_connection(start_balance, backends):
    """A connection still open when balance stops (no grace period) ends with end=shutdown."""
    srv = backends(h.EchoServer())
    b = start_balance(h.free_port(), [srv.address], ["--log-conns", "--grace", "0"])
    with b.connect() as c:
        me = client_address(c)
        c.sendall(b"s" * 33)
        assert h.recv_exact(c, 33) == b"s" * 33
        assert b.stop() == 0
        check(conn_line(b, me), me, srv.address, 33, 33, "shutdown")


def test_one_line_per_connection_and_none_without_the_option(start_balance, backends):
    """Each of several connections gets exactly one line; without --log-conns there are none."""
    srv = backends(h.EchoServer())
    logged = start_balance(h.free_port(), [srv.address], ["--log-conns"])
    silent = start_balance(h.free_port(), [srv.address])
    clients = []
    for bal in (logged, silent):
        for i in range(3):
            with bal.connect() as c:
                clients.append((bal, client_address(c)))
                c.sendall(b"x" * (i + 1))
                assert h.recv_exact(c, i + 1) == b"x" * (i + 1)
                c.shutdown(socket.SHUT_WR)
                h.recv_until_eof(c)
    for bal, me in clients[:3]:
        assert conn_line(bal, me)["end"] == "client-closed"
    silent.wait_no_connections()
    assert "conn client=" not in silent.stderr()
