"""Self-tests of the harness: the backends and /proc helpers, without the balance binary."""

import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import harness as h


def test_free_port_is_refused_and_bindable():
    """free_port() gives a port nobody listens on (connect refused) that can then be bound."""
    port = h.free_port()
    with pytest.raises(ConnectionRefusedError):
        h.connect(port, timeout=5)
    with h.EchoServer(port=port) as srv:
        assert srv.port == port


def test_free_port_never_gives_a_port_twice():
    """free_port() and closed_port() never give the same port twice in a run: a test holding a
    port as closed must not see another test's server come up on it."""
    ports = [h.free_port() for _ in range(100)] + [h.closed_port() for _ in range(100)]
    assert len(set(ports)) == len(ports)


def _ports_of_shard(shard, count=3):
    """The first `count` ports free_port() gives in a fresh interpreter told its shard."""
    code = f"import harness; print(*[harness.free_port() for _ in range({count})])"
    env = dict(os.environ, BALANCE_TEST_PORT_SHARD=shard)
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(h.__file__), env=env,
                          capture_output=True, text=True, timeout=30)
    return proc.returncode, [int(p) for p in proc.stdout.split()], proc.stderr


def test_port_shards_are_disjoint_and_below_the_ephemeral_range():
    """ctest runs the black-box files side by side, each with BALANCE_TEST_PORT_SHARD=i/n: the
    shards' ports lie in disjoint blocks, all below the ports the kernel picks for outgoing
    connections and binds to port 0; a malformed share is refused with a clear message."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    blocks = []
    for i in range(3):
        rc, ports, err = _ports_of_shard(f"{i}/3")
        assert rc == 0, err
        assert len(ports) == 3 and all(h.PORTS_FROM <= p < ephemeral_low for p in ports), ports
        blocks.append(ports)
    assert max(blocks[0]) < min(blocks[1]) and max(blocks[1]) < min(blocks[2]), blocks
    for bad in ("3/3", "x", "1/0"):
        rc, _, err = _ports_of_shard(bad, count=1)
        assert rc != 0 and f"BALANCE_TEST_PORT_SHARD={bad!r}: expected i/n with i < n" in err


def test_listen_state_seen_in_proc():
    """A listener of this process shows up in /proc/net/tcp as LISTEN and is attributed to us."""
    with h.EchoServer() as srv:
        assert h.is_listening(os.getpid(), srv.port, "127.0.0.1")
        assert os.getpid() in h.listening_pids(srv.port)
    if h.have_ipv6():
        with h.EchoServer(family=socket.AF_INET6) as srv6:
            assert h.is_listening(os.getpid(), srv6.port, "::1")


def test_name_server_sends_name_then_echoes():
    """NameServer sends its name and a newline on accept, then echoes."""
    with h.NameServer("alpha") as srv, h.connect(srv.port) as c:
        assert h.recv_until(c, b"\n") == b"alpha\n"
        c.sendall(b"ping")
        assert h.recv_exact(c, 4) == b"ping"
        c.shutdown(socket.SHUT_WR)
        assert h.recv_until_eof(c) == b""
        rec = srv.wait_connections(1)[0]
        assert rec.ended.wait(5) and rec.end == "eof"


def test_echo_server_reset_after():
    """EchoServer(reset_after=N) resets the connection once N bytes arrived."""
    with h.EchoServer(reset_after=10) as srv, h.connect(srv.port) as c:
        c.sendall(b"x" * 20)
        assert h.expect_closed(c) == "reset"


TCP_REPAIR = 19  # linux/tcp.h: a socket in repair mode is closed without sending anything


def ms_since_data_and_ack(sock: socket.socket) -> tuple:
    """(tcpi_last_data_recv, tcpi_last_ack_recv) of `sock`, in milliseconds."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("II", info, 52)


def test_keepalive_ends_only_connections_whose_peer_is_gone():
    """keepalive=1: a connection whose client socket vanished without a FIN or a reset (closed in
    TCP repair mode) ends with a reset once probed; one whose client still holds it answers the
    probes (an ACK arrives a second after the last data) and stays open and usable."""
    with h.EchoServer(keepalive=1) as srv:
        held = h.connect(srv.port)
        gone = h.connect(srv.port)
        recs = srv.wait_connections(2)
        rec_gone = next(r for r in recs if r.peer[1] == gone.getsockname()[1])
        rec_held = next(r for r in recs if r.peer[1] == held.getsockname()[1])
        gone.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        gone.close()
        assert rec_gone.ended.wait(h.scaled(10)) and rec_gone.end == "reset", rec_gone
        server_side = next(c for c in srv._conns if c.getpeername()[1] == held.getsockname()[1])

        def probe_answered():
            data_ms, ack_ms = ms_since_data_and_ack(server_side)
            return data_ms - ack_ms >= 800
        h.wait_for(probe_answered, 10, "an answered keepalive probe")
        assert not rec_held.ended.is_set(), rec_held
        held.sendall(b"still here")
        assert h.recv_exact(held, 10) == b"still here"
        held.close()
        assert rec_held.ended.wait(h.scaled(10)) and rec_held.end == "eof", rec_held


def test_sink_server_records_hashes_both_ways():
    """SinkServer hashes what it receives and what it sends; the client sees the same bytes."""
    with h.SinkServer(reply=3 << 20) as srv, h.connect(srv.port) as c:
        sent = hashlib.sha256()
        got = hashlib.sha256()
        t = threading.Thread(target=lambda: h.recv_until_eof(c, 30, hasher=got, keep=False))
        t.start()
        for chunk in h.random_stream(5 << 20, sent):
            c.sendall(chunk)
        c.shutdown(socket.SHUT_WR)
        t.join(30)
        rec = srv.wait_connections(1)[0]
        assert rec.ended.wait(10)
        assert rec.received_bytes == 5 << 20 and rec.received_sha256 == sent.hexdigest()
        assert rec.sent_bytes == 3 << 20 and rec.sent_sha256 == got.hexdigest()


def test_sink_server_half_close():
    """SinkServer(half_close=True) ends its stream after the reply and still reads the peer."""
    with h.SinkServer(reply=1000, half_close=True) as srv, h.connect(srv.port) as c:
        assert len(h.recv_until_eof(c)) == 1000
        c.sendall(b"after")
        c.shutdown(socket.SHUT_WR)
        rec = srv.wait_connections(1)[0]
        assert rec.ended.wait(10)
        assert bytes(rec.received) == b"after"


def test_blackhole_connect_times_out():
    """A connect to BlackholeServer is neither accepted nor refused within a second."""
    with h.BlackholeServer() as bh:
        s = socket.socket()
        s.settimeout(1.0)
        with pytest.raises(socket.timeout):
            s.connect(("127.0.0.1", bh.port))
        s.close()


def test_urgent_data_both_ways_directly():
    """OobEchoServer returns urgent bytes as urgent data and ordinary bytes unchanged."""
    with h.OobEchoServer() as srv, h.connect(srv.port) as c:
        r = h.UrgentReader(c)
        h.send_urgent(c, b"X")
        r.wait(lambda r: r.urgent == b"X", what="urgent X")
        c.sendall(b"abc")
        r.wait(lambda r: r.ordinary == b"abc", what="abc")
        h.send_urgent(c, b"Y")
        r.wait(lambda r: r.urgent == b"XY", what="urgent Y")
        c.sendall(b"def")
        r.wait(lambda r: r.ordinary == b"abcdef", what="def")
        c.shutdown(socket.SHUT_WR)
        r.wait(lambda r: r.eof, what="eof")
        rec = srv.wait_connections(1)[0]
        assert rec.ended.wait(5)
        assert bytes(rec.urgent) == b"XY" and bytes(rec.received) == b"abcdef"


def test_fd_count_and_socket_states_of_self():
    """fd_count and tcp_sockets see this process's connections."""
    with h.EchoServer() as srv:
        before = h.fd_count(os.getpid())
        c = h.connect(srv.port)
        srv.wait_connections(1)
        assert h.fd_count(os.getpid()) >= before + 1
        assert "ESTABLISHED" in h.socket_states(os.getpid())
        c.close()


def test_wait_for_times_out():
    """wait_for raises AssertionError naming the condition when the deadline passes."""
    start = time.monotonic()
    with pytest.raises(AssertionError, match="never"):
        h.wait_for(lambda: False, 0.2, "never")
    assert time.monotonic() - start < 5 * h.SCALE


def test_parse_show_reads_every_row_with_the_optional_columns():
    """parse_show keeps rows that carry the weight and health columns (before, it skipped them
    silently, so an assertion over the rows saw none of them), and fails on a row that lacks a
    column its header names."""
    plain = ("GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd\n"
             "  0   RR  0 ENA        127.0.0.1  9101    1           5    0          10          20\n")
    assert h.parse_show(plain) == [dict(grp=0, type="RR", ch=0, state="ENA", addr="127.0.0.1", port=9101, c=1,
                                        totalc=5, maxc=0, sent=10, rcvd=20)]
    both = ("GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd weight health\n"
            "  0   RR  0 ENA        127.0.0.1  9101    0           0    4           0           0      3     up\n"
            "  0   RR  1 dis              ::1  9102    0           0    0           0           0      1   down\n")
    rows = h.parse_show(both)
    assert [(r["ch"], r["weight"], r["health"]) for r in rows] == [(0, 3, "up"), (1, 1, "down")]
    assert rows[1]["addr"] == "::1" and rows[1]["state"] == "dis"
    with pytest.raises(AssertionError):
        h.parse_show(both.replace("      3     up\n", "\n"))
