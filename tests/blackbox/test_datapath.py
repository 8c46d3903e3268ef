"""The data path (COMPAT.md, "Data transfer"): integrity, half-close, resets, -T, urgent data."""

import ctypes
import errno
import hashlib
import os
import socket
import threading

import pytest

import harness as h

MiB = 1 << 20


class Sender(threading.Thread):
    """Sends `total` random bytes on `sock` in the background, then optionally shuts down writing.

    .sha256 / .sent hold what was sent; .error the exception that stopped it, if any.
    """

    def __init__(self, sock, total, shutdown=True):
        super().__init__(daemon=True)
        self.sock, self.total, self.shutdown = sock, total, shutdown
        self.hasher = hashlib.sha256()
        self.sent = 0
        self.error = None

    def run(self):
        try:
            for chunk in h.random_stream(self.total, self.hasher):
                self.sock.sendall(chunk)
                self.sent += len(chunk)
            if self.shutdown:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = e

    @property
    def sha256(self):
        return self.hasher.hexdigest()

    def finish(self, timeout=120):
        self.join(h.scaled(timeout))
        assert not self.is_alive(), f"sender still blocked after {self.sent} bytes"


def test_integrity_64mib_each_way_through_echo(start_balance, backends):
    """64 MiB of random data sent while the echo comes back at the same time arrives intact (sha256)."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    start_balance(port, [srv.address])
    with h.connect(port, timeout=120) as c:
        sender = Sender(c, 64 * MiB)
        sender.start()
        got = hashlib.sha256()
        h.recv_until_eof(c, 180, hasher=got, keep=False)
        sender.finish()
    assert sender.error is None, sender.error
    rec = srv.wait_connections(1)[0]
    assert rec.ended.wait(h.scaled(30))
    assert rec.received_bytes == 64 * MiB
    assert rec.received_sha256 == sender.sha256
    assert got.hexdigest() == sender.sha256


def test_integrity_64mib_both_directions_independent(start_balance, backends):
    """The client sends 64 MiB while the backend sends its own 64 MiB at once; each side
    receives exactly what the other sent (sha256 and byte count)."""
    srv = backends(h.SinkServer(reply=64 * MiB, reply_when="start"))
    port = h.free_port()
    start_balance(port, [srv.address])
    with h.connect(port, timeout=120) as c:
        sender = Sender(c, 64 * MiB)
        sender.start()
        got = hashlib.sha256()
        count = [0]

        class Counting:
            def update(self, data):
                got.update(data)
                count[0] += len(data)

        h.recv_until_eof(c, 180, hasher=Counting(), keep=False)
        sender.finish()
    assert sender.error is None, sender.error
    rec = srv.wait_connections(1)[0]
    assert rec.ended.wait(h.scaled(30))
    assert (rec.received_bytes, rec.received_sha256) == (64 * MiB, sender.sha256)
    assert (count[0], got.hexdigest()) == (rec.sent_bytes, rec.sent_sha256)
    assert rec.sent_bytes == 64 * MiB


def test_client_half_close_still_gets_full_reply(start_balance, backends):
    """A client that shuts down writing still receives the server's whole reply, sent after the server saw EOF."""
    srv = backends(h.SinkServer(reply=4 * MiB, reply_when="eof"))
    port = h.free_port()
    start_balance(port, [srv.address])
    with h.connect(port) as c:
        sender = Sender(c, 1 * MiB, shutdown=True)
        sender.run()  # inline: send, then shut down writing
        assert sender.error is None, sender.error
        got = hashlib.sha256()
        data_len = len(h.recv_until_eof(c, 60, hasher=got))
    rec = srv.wait_connections(1)[0]
    assert rec.ended.wait(h.scaled(30))
    assert (rec.received_bytes, rec.received_sha256) == (1 * MiB, sender.sha256)
    assert (data_len, got.hexdigest()) == (4 * MiB, rec.sent_sha256)


def test_server_half_close_client_can_still_send(start_balance, backends):
    """After the server ends its stream (shutdown write), the client reads it all and can still
    send: the server receives everything the client sends afterwards."""
    srv = backends(h.SinkServer(reply=1 * MiB, reply_when="start", half_close=True))
    port = h.free_port()
    start_balance(port, [srv.address])
    with h.connect(port) as c:
        got = hashlib.sha256()
        assert len(h.recv_until_eof(c, 60, hasher=got)) == 1 * MiB
        sender = Sender(c, 2 * MiB, shutdown=True)
        sender.run()
        assert sender.error is None, sender.error
        rec = srv.wait_connections(1)[0]
        assert rec.ended.wait(h.scaled(30)), "server never saw the end of the client's data"
    assert got.hexdigest() == rec.sent_sha256
    assert (rec.received_bytes, rec.received_sha256) == (2 * MiB, sender.sha256)
    assert rec.end == "eof"


def test_backend_socket_of_a_finished_connection_serves_the_next(start_balance, backends):
    """The backend socket of a connection whose both streams ended is kept for the next connect
    (docs/PERFORMANCE.md, "Techniques"), to either channel: every connection still carries all its
    bytes and both ends of stream, one descriptor is kept while connections are under way, and
    none once the last has ended."""
    servers = [backends(h.EchoServer()), backends(h.EchoServer())]
    port = h.free_port()
    bal = start_balance(port, [s.address for s in servers], ["--threads", "1"])
    baseline = bal.fd_count()
    anchor = h.connect(port)  # a connection under way: the worker keeps what the others leave
    anchor.sendall(b"anchor")
    assert h.recv_exact(anchor, 6) == b"anchor"
    inodes = []
    for i in range(6):
        before = [len(s.records) for s in servers]
        payload = f"connection {i} ".encode() * (100 + i)
        with h.connect(port) as c:
            c.sendall(payload)
            h.wait_for(lambda: sum(len(s.records) for s in servers) > sum(before), 10, "the backend connection")
            srv = next(s for s, n in zip(servers, before) if len(s.records) > n)
            rec = srv.records[-1]
            mine = [k for k in bal.connections() if k.local[1] == rec.peer[1] and k.remote[1] == srv.port]
            assert len(mine) == 1, bal.connections()
            inodes.append(mine[0].inode)
            c.shutdown(socket.SHUT_WR)
            assert h.recv_until_eof(c, 20) == payload
        assert rec.ended.wait(h.scaled(20))
        assert (rec.end, rec.received_bytes) == ("eof", len(payload))
        assert rec.received_sha256 == hashlib.sha256(payload).hexdigest()
        bal.wait_fd_count(baseline + 3)  # the anchor's two sockets and the one kept
    assert len(set(inodes)) == 1, inodes  # one socket connected six times
    assert {len(s.records) for s in servers} == {3, 4}  # round robin: both channels were reached
    anchor.close()
    bal.wait_no_connections()
    bal.wait_fd_count(baseline)


def test_backend_reset_mid_stream(start_balance, backends):
    """A backend resetting mid-stream ends the client's connection promptly; balance keeps serving."""
    srv = backends(h.EchoServer(reset_after=256 * 1024))
    port = h.free_port()
    bal = start_balance(port, [srv.address])
    baseline = bal.fd_count()
    with h.connect(port) as c:
        sender = Sender(c, 16 * MiB, shutdown=False)
        sender.start()
        assert h.expect_closed(c, 20) in ("eof", "reset")
        sender.finish(30)
    # A new client is served normally (a short exchange stays under reset_after).
    with h.connect(port) as c:
        c.sendall(b"ping")
        assert h.recv_exact(c, 4) == b"ping"
    bal.wait_fd_count(baseline)


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "streaming"])
def test_client_vanishing_mid_stream(start_balance, backends, how, busy):
    """A client that disappears (close or RST) mid-stream makes balance end the backend connection
    (the backend sees EOF or a reset) and release every descriptor it used."""
    srv = backends(h.SinkServer(reply=256 * MiB, reply_when="start") if busy else h.EchoServer())
    port = h.free_port()
    bal = start_balance(port, [srv.address])
    baseline = bal.fd_count()
    c = h.connect(port)
    try:
        c.sendall(b"x" * 100000)
        if busy:
            h.recv_exact(c, 1 * MiB, 30)  # data is flowing toward the client
        else:
            assert h.recv_exact(c, 100000, 30) == b"x" * 100000
        rec = srv.wait_connections(1)[0]
        if how == "reset":
            h.set_linger_reset(c)
    finally:
        c.close()
    assert rec.ended.wait(h.scaled(20)), "backend connection still open after the client vanished"
    assert rec.end in ("eof", "reset", "done"), rec.end
    assert bal.alive()
    bal.wait_no_connections()
    bal.wait_fd_count(baseline)


def test_idle_timeout_closes_idle_keeps_active(start_balance, backends):
    """With -T 1 an idle connection is closed (the client reads EOF) while a busy one survives."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    start_balance(port, [srv.address], opts=["-T", "1"])
    idle = h.connect(port)
    active = h.connect(port)
    stop = threading.Event()
    errors = []
    exchanges = [0]

    def keep_busy():
        try:
            while not stop.is_set():
                active.sendall(b".")
                assert h.recv_exact(active, 1, 10) == b"."
                exchanges[0] += 1
                stop.wait(0.2)
        except (OSError, AssertionError) as e:
            errors.append(e)

    t = threading.Thread(target=keep_busy, daemon=True)
    t.start()
    try:
        assert h.expect_closed(idle, 15) in ("eof", "reset")
        # Keep the active one going for more than another full timeout period.
        target = exchanges[0] + 10
        h.wait_for(lambda: exchanges[0] >= target or errors, 20, "more exchanges on the active connection")
    finally:
        stop.set()
        t.join(h.scaled(15))
        idle.close()
    assert not errors, f"active connection broke: {errors[0]!r}"
    active.sendall(b"!")
    assert h.recv_exact(active, 1) == b"!"
    active.close()


def test_urgent_data_first_byte_and_later_both_ways(start_balance, backends):
    """Urgent bytes from the client (as its very first byte and later) reach the backend as urgent
    data and its urgent echoes reach the client as urgent data; ordinary bytes around them are intact."""
    srv = backends(h.OobEchoServer())
    port = h.free_port()
    start_balance(port, [srv.address])
    with h.connect(port) as c:
        r = h.UrgentReader(c)
        h.send_urgent(c, b"X")
        r.wait(lambda r: r.urgent == b"X", what="urgent X back")
        rec = srv.wait_connections(1)[0]
        assert bytes(rec.urgent) == b"X" and bytes(rec.received) == b""
        c.sendall(b"abc")
        r.wait(lambda r: r.ordinary == b"abc", what="abc back")
        h.send_urgent(c, b"Y")
        r.wait(lambda r: r.urgent == b"XY", what="urgent Y back")
        c.sendall(b"def")
        r.wait(lambda r: r.ordinary == b"abcdef", what="def back")
        c.shutdown(socket.SHUT_WR)
        r.wait(lambda r: r.eof, what="end of stream")
    assert rec.ended.wait(h.scaled(10))
    assert bytes(rec.urgent) == b"XY"
    assert bytes(rec.received) == b"abcdef"
    assert r.urgent == b"XY" and r.ordinary == b"abcdef"


def test_urgent_data_from_server_as_first_byte(start_balance, backends):
    """An urgent byte that is the backend's very first byte reaches the client as urgent data,
    and ordinary data then flows normally."""
    srv = backends(h.OobEchoServer(greet_urgent=b"Z"))
    port = h.free_port()
    start_balance(port, [srv.address])
    with h.connect(port) as c:
        r = h.UrgentReader(c)
        r.wait(lambda r: r.urgent == b"Z", what="urgent Z from the server")
        assert r.ordinary == b""
        c.sendall(b"hello")
        r.wait(lambda r: r.ordinary == b"hello", what="hello back")
    assert r.urgent == b"Z"


def test_urgent_bytes_in_quick_succession_lose_no_byte(start_balance, backends):
    """A client sends urgent bytes in quick succession between ordinary ones. TCP keeps one urgent
    mark, so a later urgent byte may supersede an earlier one, but no byte may go missing or move:
    a backend reading with SO_OOBINLINE gets the client's stream exactly. (balance used to lose an
    urgent byte the next one superseded before balance had taken it: 1 to 3 connections of 20.)"""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)  # accepted sockets inherit it
    listener.settimeout(h.scaled(10))
    backends(listener)
    port = h.free_port()
    start_balance(port, [h.channel(listener.getsockname()[1])])
    wrong = []
    for i in range(20):
        with h.connect(port) as c:
            s, _ = listener.accept()
            with s:
                c.sendall(b"aaaa")
                h.send_urgent(c, b"X")
                c.sendall(b"bbbb")
                h.send_urgent(c, b"Y")
                c.sendall(b"cccc")
                c.shutdown(socket.SHUT_WR)
                got = h.recv_until_eof(s, 10)
        if got != b"aaaaXbbbbYcccc":
            wrong.append((i, got))
    assert not wrong, f"{len(wrong)} of 20 connections: {wrong[:3]}"


SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


def sockets_of(pid):
    """Duplicates of the TCP sockets of process `pid` (pidfd_getfd(2)): {fd number: socket}.
    Skips the test where the kernel or the sandbox does not offer pidfd_getfd."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue  # closed meanwhile
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                err = ctypes.get_errno()
                if err in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
                    for s in found.values():
                        s.close()
                    pytest.skip(f"pidfd_getfd unavailable here: {os.strerror(err)}")
                continue  # closed meanwhile
            s = socket.socket(fileno=fd)
            if s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM:
                found[int(name)] = s
            else:
                s.close()
    finally:
        os.close(pidfd)
    return found


def test_socket_options_of_the_listener_and_both_sides(start_balance, backends):
    """TCP_NODELAY and SO_KEEPALIVE on both sockets of a proxied connection, SO_REUSEADDR on
    the listener (COMPAT.md, "Data transfer")."""
    srv = backends(h.NameServer("x"))
    port = h.free_port()
    bal = start_balance(port, [srv.address], opts=["--threads", "1"])
    with h.connect(port) as client:
        assert h.recv_until(client) == b"x\n"
        socks = sockets_of(bal.pid)
        try:
            def peer_port(s):
                try:
                    return s.getpeername()[1]
                except OSError:
                    return None  # a listener
            listeners = [s for s in socks.values() if peer_port(s) is None]
            to_client = [s for s in socks.values() if s.getsockname()[1] == port and peer_port(s) is not None]
            to_server = [s for s in socks.values() if peer_port(s) == srv.port]
            assert (len(listeners) >= 1, len(to_client), len(to_server)) == (True, 1, 1), socks
            for s in listeners:
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
            for s in to_client + to_server:
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1, s
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1, s
        finally:
            for s in socks.values():
                s.close()
