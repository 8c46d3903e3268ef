"""Faults on either side of balance (issue 5): backends that refuse, never answer, reset, never
read, send part of a reply, are killed or flap; clients that reset, half-close, trickle or vanish.
Control commands run during every case, and after it assert_settled() checks that descriptors,
half-closed sockets and channel counts are all back to where they started."""

import hashlib
import random
import select
import socket
import threading
import time

import pytest

import harness as h
from faults_support import (MiB, Chatter, FlappingServer, KillableEchoServer, NeverReadServer, Outcome,
                                 PartialReplyServer, ResetServer, Streamer, assert_settled, exchange,
                                 figure, lingering_sockets, rss_kib, run_clients)


def start(start_balance, backends, group0, opts=()):
    """balance with `group0` (channel texts) in group 0 and a spare echo channel in group 1 (the
    chatter's to toggle); returns (balance, baseline descriptor count)."""
    spare = backends(h.EchoServer())
    port = h.free_port()
    bal = start_balance(port, [*group0, "!", spare.address], opts=["--threads", "2", *opts])
    return bal, bal.fd_count()


# --------------------------------------------------------------------------------------------
# Backend faults
# --------------------------------------------------------------------------------------------

def test_backend_refusing_fails_over(start_balance, backends):
    """A channel that refuses every connect: each client it would have had fails over to the
    next channel and is served; the refusing channel's slots are all given back."""
    echo = backends(h.EchoServer())
    bal, baseline = start(start_balance, backends, [h.channel(h.closed_port()), echo.address])
    with Chatter(bal):
        outcomes = run_clients(bal.port, 40, 32 * 1024)
    assert outcomes == [Outcome.SERVED] * 40
    rows = assert_settled(bal, baseline)
    assert rows[0]["totalc"] >= 20 and rows[1]["totalc"] >= 40, rows  # every other pick was refused


def test_backend_never_completing_handshake_times_out_and_fails_over(start_balance, backends):
    """A channel whose accept queue is full never answers the SYN: after -t 1 the connect is given
    up and the client is served by the next channel, within the timeout plus a margin."""
    hole = backends(h.BlackholeServer())
    echo = backends(h.EchoServer())
    bal, baseline = start(start_balance, backends, [hole.address, echo.address], opts=["-t", "1"])
    durations = []

    def timed_exchange(seed):
        t0 = time.monotonic()
        out = exchange(bal.port, 4096, timeout=15, rng=random.Random(seed))
        durations.append(time.monotonic() - t0)
        return out

    with Chatter(bal):
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(timed_exchange(i))) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(h.scaled(30))
    assert results == [Outcome.SERVED] * 10
    assert sum(d >= 0.9 for d in durations) >= 4, durations  # those that met the black hole waited -t...
    assert max(durations) < h.scaled(4), durations             # ...and no longer than -t and a margin
    assert_settled(bal, baseline)


def test_backend_accepting_then_resetting(start_balance, backends):
    """A channel that accepts and at once resets: its clients see their connection end (never
    wrong bytes, never a hang); the other channel's clients are served."""
    resetter = backends(ResetServer())
    echo = backends(h.EchoServer())
    bal, baseline = start(start_balance, backends, [resetter.address, echo.address])
    with Chatter(bal):
        outcomes = run_clients(bal.port, 40, 32 * 1024)
    assert outcomes.count(Outcome.CLOSED) >= 10 and outcomes.count(Outcome.SERVED) >= 10, outcomes
    assert_settled(bal, baseline)


def test_backend_never_reading_keeps_memory_bounded(start_balance, backends):
    """Four clients push 64 MiB each (256 MiB) to a backend that stops reading: the clients are
    held back (back-pressure) and balance's RSS grows by less than 4 MiB; once the backend reads
    again (slowly, 16 KiB at a time) every byte arrives intact (sha256), still within the bound.
    (Under sanitizers only the back-pressure and the bytes are checked, not the RSS.)"""
    sink = backends(NeverReadServer())
    bal, baseline = start(start_balance, backends, [sink.address])
    warm = h.connect(bal.port)  # a first connection: allocations made once per worker are done
    warm.close()
    sink.wait_connections(1)  # (it stays half-open until the sink reads again)
    rss_before = rss_kib(bal.pid)
    peak = [rss_before]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], rss_kib(bal.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    clients = [h.connect(bal.port, timeout=120) for _ in range(4)]
    senders = [Sender(c, 64 * MiB) for c in clients]
    with Chatter(bal):
        for s in senders:
            s.start()
        sink.wait_connections(5)

        def stalled():  # no sender moved for half a second: everything between them and the sink is full
            before = [s.sent for s in senders]
            time.sleep(0.5)
            return [s.sent for s in senders] == before
        h.wait_for(stalled, 30, "the senders to be held back")
        held_bytes = sum(s.sent for s in senders)
        # Each sender is stopped short of its 64 MiB. (What is in flight is the kernel's socket
        # buffers, several MiB per connection; balance's own memory is the RSS check below.)
        assert all(s.sent < 64 * MiB for s in senders), \
            f"no back-pressure: a sender was not held back ({[s.sent for s in senders]})"
        held_back_growth = rss_kib(bal.pid) - rss_before
        sink.release()
        for s in senders:
            s.finish(180)
    for c in clients:
        c.close()
    records = sink.wait_connections(5)[1:]
    for rec in records:
        assert rec.ended.wait(h.scaled(60))
    sampling.set()
    sampler.join()
    assert sorted((r.received_bytes, r.received_sha256) for r in records) == \
        sorted((64 * MiB, s.sha256) for s in senders)
    figure("slow_consumer_rss_growth_held_kib", held_back_growth)
    figure("slow_consumer_rss_growth_peak_kib", peak[0] - rss_before)
    figure("slow_consumer_bytes_sent_while_held", held_bytes)
    if not h.SANITIZED:  # ASan's quarantine keeps freed buffers resident: the bound is the plain build's
        assert held_back_growth < 4096, f"RSS grew by {held_back_growth} KiB while the backend did not read"
        assert peak[0] - rss_before < 4096, f"RSS peaked {peak[0] - rss_before} KiB above its start"
    assert_settled(bal, baseline)


class Sender(threading.Thread):
    """Sends `total` random bytes on `sock`, then shuts down writing; .sent, .sha256, .error."""

    def __init__(self, sock, total):
        super().__init__(daemon=True)
        self.sock, self.total = sock, total
        self.hasher = hashlib.sha256()
        self.sent = 0
        self.error = None

    def run(self):
        try:
            for chunk in h.random_stream(self.total, self.hasher, chunk=256 * 1024):
                self.sock.sendall(chunk)
                self.sent += len(chunk)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = e

    @property
    def sha256(self):
        return self.hasher.hexdigest()

    def finish(self, timeout):
        self.join(h.scaled(timeout))
        assert not self.is_alive(), f"sender still blocked after {self.sent} bytes"
        assert self.error is None, self.error


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_backend_sending_part_of_a_reply_then_closing(start_balance, backends, how):
    """A backend reads the request, sends 256 KiB of a longer answer and closes. With a FIN the
    client gets exactly those bytes (sha256) and then the end of stream; with a reset it gets a
    prefix of them and then the reset. Either way the connection ends promptly."""
    srv = backends(PartialReplyServer(request=1000, reply=256 * 1024, how=how))
    bal, baseline = start(start_balance, backends, [srv.address])
    with Chatter(bal):
        for _ in range(5):
            with h.connect(bal.port) as c:
                c.sendall(b"q" * 1000)  # the request; the client does not half-close: it waits for the answer
                got = bytearray()
                try:
                    while True:
                        chunk = c.recv(1 << 16)
                        if not chunk:
                            end = "eof"
                            break
                        got += chunk
                except ConnectionResetError:
                    end = "reset"
            rec = srv.records[-1]
            reply = srv.replies[id(rec)]
            if how == "fin":
                assert (end, hashlib.sha256(got).hexdigest(), len(got)) == ("eof", rec.sent_sha256, len(reply))
            else:
                assert bytes(got) == reply[:len(got)], "bytes that the backend never sent"
    assert_settled(bal, baseline)


def test_backend_killed_mid_stream(start_balance, backends):
    """A backend process killed (SIGKILL) while clients stream through it: its clients see their
    connections end within seconds, the other channel's clients go on undisturbed, and new
    clients are served by the surviving channel."""
    victim = backends(KillableEchoServer())
    echo = backends(h.EchoServer())
    bal, baseline = start(start_balance, backends, [victim.address, echo.address])
    with Chatter(bal):
        streams = [Streamer(bal.port, seed=i) for i in range(6)]
        for s in streams:
            s.start()
        h.wait_for(lambda: all(s.exchanged > 0 for s in streams), 10, "every client streaming")
        victim.kill()
        h.wait_for(lambda: sum(s.outcome == "closed" for s in streams) == 3, 10,
                   "the killed backend's three clients to see their connections end")
        moving = {id(s): s.exchanged for s in streams if s.outcome == "running"}
        h.wait_for(lambda: all(s.exchanged > moving[id(s)] for s in streams if id(s) in moving), 10,
                   "the other clients to go on streaming")
        for s in streams:
            s.stop()
        assert sorted(s.outcome for s in streams) == ["closed"] * 3 + ["running"] * 3, [s.outcome for s in streams]
        assert run_clients(bal.port, 10, 8192) == [Outcome.SERVED] * 10
    assert_settled(bal, baseline)


def test_backend_flapping(start_balance, backends):
    """A channel whose listener goes down and comes back every 150 ms (ten times) while eight
    clients keep connecting: every client is served (by it or, failing over, by the other channel) or sees a
    clean end of its connection; none hangs and no byte is wrong."""
    flapper = backends(FlappingServer())
    echo = backends(h.EchoServer())
    bal, baseline = start(start_balance, backends, [flapper.address, echo.address], opts=["-t", "1"])
    flapper.start()
    outcomes = []
    with Chatter(bal):
        while flapper.cycles < 10:
            outcomes += run_clients(bal.port, 40, 16 * 1024, parallel=8, timeout=10, seed=len(outcomes))
        flapper.stop()
    served = outcomes.count(Outcome.SERVED)
    figure("flapping_clients", {"served": served, "closed": len(outcomes) - served, "flaps": flapper.cycles})
    assert served >= 0.8 * len(outcomes), f"{served} of {len(outcomes)} clients served"
    assert_settled(bal, baseline)


# --------------------------------------------------------------------------------------------
# Client faults
# --------------------------------------------------------------------------------------------

def test_clients_resetting_at_random_moments(start_balance, backends):
    """Forty clients reset their connection (RST) at random moments -- before sending, mid-way
    through their data, while the echo flows back -- some while balance is still connecting
    them (to a black hole first, -t 1): the backend connections all end, nothing is left."""
    hole = backends(h.BlackholeServer())
    echo = backends(h.EchoServer(keepalive=2))  # why: test_clients_opening_and_vanishing
    bal, baseline = start(start_balance, backends, [hole.address, echo.address, echo.address],
                          opts=["-t", "1"])
    rng = random.Random(5)

    def reset_client(seed):
        r = random.Random(seed)
        c = h.connect(bal.port)
        data = r.randbytes(r.choice([0, 1000, 300 * 1024]))
        try:
            if data:
                c.sendall(data[: r.randrange(len(data) + 1)])
            if data and r.random() < 0.5:
                c.recv(r.choice([1, 4096]))  # some wait until the echo flows
        except OSError:
            pass
        h.set_linger_reset(c)
        c.close()

    with Chatter(bal):
        threads = [threading.Thread(target=reset_client, args=(rng.random(),)) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(h.scaled(30))
        assert run_clients(bal.port, 6, 8192) == [Outcome.SERVED] * 6
    assert_settled(bal, baseline)
    for rec in echo.records:
        assert rec.ended.wait(h.scaled(10)), (f"a backend connection outlived its client: {rec}\n"
                                              + h.socket_table(echo.port))


def test_clients_half_closing_get_everything(start_balance, backends):
    """Twenty clients at once send 0..2 MiB, shut down writing and read on: each gets its whole
    echo (sha256) and then the end of stream."""
    echo = backends(h.EchoServer())
    bal, baseline = start(start_balance, backends, [echo.address])
    sizes = [0, 1, 65535, 65536, 65537] + [random.Random(i).randrange(2 * MiB) for i in range(15)]
    results = {}

    def half_close(i, n):
        results[i] = exchange(bal.port, n, timeout=60, rng=random.Random(i))

    with Chatter(bal):
        threads = [threading.Thread(target=half_close, args=(i, n)) for i, n in enumerate(sizes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(h.scaled(90))
    assert [results.get(i) for i in range(len(sizes))] == [Outcome.SERVED] * len(sizes)
    assert_settled(bal, baseline)


class SilentServer(h._Server):
    """Reads until the client's end of stream, then neither sends nor closes until closed."""

    def handle(self, conn, rec):
        self._read_all(conn, rec)
        self._closed.wait(self.io_timeout)


def test_half_closed_connection_ends_after_idle_timeout(start_balance, backends):
    """A client half-closes toward a backend that never answers nor closes: balance holds the
    client's socket in CLOSE_WAIT and the backend's in FIN_WAIT2 (the half-close is forwarded and
    waits for the backend) -- but no longer than the idle timeout -T 2."""
    srv = backends(SilentServer())
    bal, baseline = start(start_balance, backends, [srv.address], opts=["-T", "2"])
    with Chatter(bal):
        c = h.connect(bal.port)
        c.sendall(b"request")
        # The idle time runs from the last bytes moved, so it is measured from here: looking
        # for the half-closed pair below may itself take over a second on a busy machine.
        t0 = time.monotonic()
        c.shutdown(socket.SHUT_WR)
        rec = srv.wait_connections(1)[0]
        assert rec.got_eof.wait(h.scaled(10)), "the client's end of stream was not forwarded"
        h.wait_for(lambda: {s.state for s in lingering_sockets(bal)} == {"CLOSE_WAIT", "FIN_WAIT2"}, 5,
                   "the half-closed pair")
        assert h.expect_closed(c, 10) == "eof"
        waited = time.monotonic() - t0
        c.close()
    assert 1.0 < waited < h.scaled(4), f"closed after {waited:.1f}s, expected the 2 s idle timeout"
    assert_settled(bal, baseline)


def test_client_trickling_one_byte_a_second(start_balance, backends):
    """Two clients send one byte a second for five seconds with -T 3: the idle timeout never
    strikes a connection that keeps moving, every byte comes back, and a final burst checks out."""
    echo = backends(h.EchoServer())
    bal, baseline = start(start_balance, backends, [echo.address], opts=["-T", "3"])
    rng = random.Random(9)
    with Chatter(bal):
        clients = [h.connect(bal.port) for _ in range(2)]
        for _ in range(5):
            for c in clients:
                b = bytes([rng.randrange(256)])
                c.sendall(b)
                assert h.recv_exact(c, 1, 5) == b
            time.sleep(1)  # the workload itself: one byte a second
        burst = rng.randbytes(100000)
        for c in clients:
            c.sendall(burst)
            c.shutdown(socket.SHUT_WR)
            got = h.recv_until_eof(c, 20)
            assert hashlib.sha256(got).digest() == hashlib.sha256(burst).digest()
            c.close()
    assert_settled(bal, baseline)


def test_clients_opening_and_vanishing(start_balance, backends):
    """Two hundred clients connect and go at once -- with a FIN or a reset, some after sending a
    little without reading -- half of them while balance still waits on a black hole (-t 1):
    balance lets every one go, and the backend sees each of its connections end.

    The backend probes idle connections with TCP keepalive. balance's reset of a connection whose
    handshake the backend answered with a SYN cookie can overtake, on a busy host, the ACK that
    completes it (loopback queues packets per CPU), and the backend then accepts a connection whose
    other end is already gone: no segment of it is ever sent again. A probe is answered with a
    reset when balance's socket no longer exists, and acknowledged when balance still holds it, so
    only a connection balance really let go ends that way."""
    hole = backends(h.BlackholeServer())
    echo = backends(h.EchoServer(keepalive=2))
    bal, baseline = start(start_balance, backends, [hole.address, echo.address], opts=["-t", "1"])
    rng = random.Random(3)
    with Chatter(bal):
        for i in range(200):
            c = h.connect(bal.port)
            if i % 3 == 0:
                c.sendall(rng.randbytes(rng.randrange(1, 5000)))
            if i % 2 == 0:
                h.set_linger_reset(c)
            c.close()
        assert run_clients(bal.port, 4, 4096) == [Outcome.SERVED] * 4
    assert_settled(bal, baseline, timeout=20)
    for rec in echo.records:
        assert rec.ended.wait(h.scaled(10)), (f"a backend connection outlived its client: {rec}\n"
                                              + h.socket_table(echo.port))


# --------------------------------------------------------------------------------------------
# A reset after a half-close; -T with a slow or a stalled reader
# --------------------------------------------------------------------------------------------

def wait_reset_or_hangup(sock, timeout):
    """True once `sock` reports an error or hang-up (a reset reached it); False after `timeout`."""
    p = select.poll()
    p.register(sock, select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + h.scaled(timeout)
    while time.monotonic() < deadline:
        if p.poll(100):
            return True
    return False


@pytest.mark.parametrize("who", ["client", "server"])
def test_reset_after_half_close_reaches_the_other_peer(start_balance, backends, who):
    """A peer half-closes, then resets while the other peer sends nothing: the reset reaches the
    other peer at once (balance no longer reads the ended side, but still watches it), and balance
    lets go of both sockets. It used to hold them until the other peer wrote again."""
    listener = socket.create_server(("127.0.0.1", 0))
    backends(listener)
    bal, baseline = start(start_balance, backends, [h.channel(listener.getsockname()[1])])
    with Chatter(bal):
        c = h.connect(bal.port)
        listener.settimeout(h.scaled(10))
        s, _ = listener.accept()
        ender, other = (c, s) if who == "client" else (s, c)
        try:
            ender.sendall(b"last words")
            ender.shutdown(socket.SHUT_WR)
            assert h.recv_until_eof(other, 10) == b"last words"
            h.set_linger_reset(ender)
            ender.close()
            assert wait_reset_or_hangup(other, 10), f"the {who}'s reset never reached the other peer"
            assert other.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
        finally:
            c.close()
            s.close()
    assert_settled(bal, baseline)


def test_idle_timeout_spares_a_slow_reader(start_balance, backends):
    """-T 1 and a client that reads a 5 MiB reply at about 1 MB/s: bytes reach it all the time,
    though balance writes to it only when its send queue has room again, seconds apart. The
    connection is not idle, and the whole reply arrives (sha256). It used to be cut after about
    3.9 MB, with a FIN, as if complete."""
    srv = backends(h.SinkServer(reply=5 * MiB, reply_when="start", half_close=True))
    bal, baseline = start(start_balance, backends, [srv.address], opts=["-T", "1"])
    with Chatter(bal):
        c = h.connect(bal.port, timeout=30)
        got = hashlib.sha256()
        received = 0
        deadline = time.monotonic() + h.scaled(60)
        while time.monotonic() < deadline:
            data = c.recv(16 * 1024)
            if not data:
                break
            got.update(data)
            received += len(data)
            time.sleep(len(data) / 1e6)  # the workload itself: a reader of 1 MB/s
        c.close()
        rec = srv.wait_connections(1)[0]
    assert (received, got.hexdigest()) == (5 * MiB, rec.sent_sha256), f"cut off after {received} bytes"
    assert_settled(bal, baseline)


def test_idle_timeout_resets_a_stalled_reader(start_balance, backends):
    """-T 1 and a client that stops reading a long reply: nothing moves, and balance ends the
    connection within two idle periods, with a reset on both sides, so that neither the client
    nor the backend takes the cut stream for a complete one."""
    srv = backends(h.SinkServer(reply=256 * MiB, reply_when="start"))
    bal, baseline = start(start_balance, backends, [srv.address], opts=["-T", "1"])
    with Chatter(bal):
        c = h.connect(bal.port)
        h.recv_exact(c, 1 * MiB, 30)  # then it stops reading
        rec = srv.wait_connections(1)[0]
        t0 = time.monotonic()
        assert rec.ended.wait(h.scaled(10)), "the stalled connection was never ended"
        waited = time.monotonic() - t0
        assert rec.end == "reset", rec.end
        with pytest.raises(ConnectionResetError):
            h.recv_until_eof(c, 30, keep=False)
        c.close()
    assert waited < h.scaled(4), f"ended after {waited:.1f}s, expected at most two 1 s idle periods"
    assert_settled(bal, baseline)
