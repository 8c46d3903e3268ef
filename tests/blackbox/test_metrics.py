"""--metrics ADDR:PORT: /metrics counts exactly the traffic that went through, passes promtool,
/status.json agrees with it, bad requests and a taken port are handled."""

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

import harness as h
from faults_support import rss_kib

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, ((label, value), ...)): value} for every sample line of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"malformed sample line: {line!r}"
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def http_get(port, path, method="GET", host="127.0.0.1", timeout=10):
    """(status, headers, body bytes) of one request; HTTP errors are returned, not raised."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    req = urllib.request.Request(f"http://{netloc}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=h.scaled(timeout)) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Metrics:
    """The --metrics endpoint of a running balance."""

    def __init__(self, balance, port, host="127.0.0.1"):
        self.port, self.host = port, host
        h.wait_for(lambda: h.is_listening(balance.pid, port), 15, f"balance to serve --metrics on port {port}")

    def text(self):
        status, headers, body = http_get(self.port, "/metrics", host=self.host)
        assert status == 200, (status, body[:200])
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers["Content-Type"]
        return body.decode()

    def scrape(self):
        return parse_metrics(self.text())

    def status(self):
        status, headers, body = http_get(self.port, "/status.json", host=self.host)
        assert status == 200 and headers["Content-Type"] == "application/json", (status, headers)
        return json.loads(body)

    def channel(self, name, backend):
        """The value of per-channel series `name` for the channel of `backend` (None if absent)."""
        for (n, labels), v in self.scrape().items():
            if n == name and dict(labels)["backend"] == backend:
                return v
        return None


def start_with_metrics(start_balance, channels, opts=()):
    """balance with --metrics on a free loopback port, and its Metrics."""
    mport = h.free_port()
    port = h.free_port()
    b = start_balance(port, channels, ["--metrics", f"127.0.0.1:{mport}", *opts])
    return b, Metrics(b, mport)


def exchange(port, payload):
    """One client connection through balance: sends `payload`, reads its echo, then closes."""
    with h.connect(port) as c:
        c.sendall(payload)
        assert h.recv_exact(c, len(payload)) == payload
        c.shutdown(socket.SHUT_WR)
        assert h.recv_until_eof(c) == b""


def expect(metrics, wanted, what):
    """Waits until every (name, backend) -> value in `wanted` is what /metrics shows."""
    def seen():
        got = {k: metrics.channel(k[0], k[1]) for k in wanted}
        return got if got == wanted else None
    try:
        h.wait_for(seen, 10, what)
    except AssertionError:
        got = {k: metrics.channel(k[0], k[1]) for k in wanted}
        raise AssertionError(f"{what}: wanted {wanted}, /metrics shows {got}") from None


def tool(name):
    """Path of a tool the tests need; skipped outside CI when missing, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (tools/install-deps installs it)", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return path


def test_counters_move_exactly_as_the_traffic(start_balance, backends):
    """Connections and bytes per channel, and accepted totals, equal what the clients and the
    backends saw, both while connections are open and after they end."""
    a, b = backends(h.EchoServer()), backends(h.EchoServer())
    bal, m = start_with_metrics(start_balance, [a.address, b.address])
    first = m.scrape()
    assert first[("balance_accepted_connections_total", ())] == 0
    assert first[("balance_channel_connections_total", (("backend", a.address), ("channel", "0"),
                                                        ("group", "0")))] == 0

    # Two connections held open mid-stream: they show as current connections.
    held = [h.connect(bal.port) for _ in range(2)]
    try:
        for i, c in enumerate(held):
            c.sendall(b"x" * (100 + i))
            assert h.recv_exact(c, 100 + i) == b"x" * (100 + i)
        h.wait_for(lambda: sum(m.channel("balance_channel_connections", s.address) or 0 for s in (a, b)) == 2,
                   10, "2 current connections in /metrics")
        h.wait_for(lambda: sum(m.channel("balance_channel_sent_bytes_total", s.address) for s in (a, b)) == 201,
                   10, "201 bytes sent so far")
    finally:
        for c in held:
            c.close()

    for size in (1, 1000, 65536, 200000, 7):
        exchange(bal.port, os.urandom(size))
    bal.wait_no_connections()

    wanted = {}
    for s in (a, b):
        recs = s.records
        assert all(r.ended.wait(h.scaled(10)) for r in recs)
        wanted[("balance_channel_connections_total", s.address)] = len(recs)
        wanted[("balance_channel_sent_bytes_total", s.address)] = sum(r.received_bytes for r in recs)
        wanted[("balance_channel_received_bytes_total", s.address)] = sum(r.sent_bytes for r in recs)
        wanted[("balance_channel_connections", s.address)] = 0
        wanted[("balance_channel_connect_failures_total", s.address)] = 0
    assert len(a.records) + len(b.records) == 7
    expect(m, wanted, "per-channel counters equal to the backends' own counts")
    total = m.scrape()
    assert total[("balance_accepted_connections_total", ())] == 7
    assert total[("balance_refused_connections_total", ())] == 0
    assert total[("balance_log_lines_dropped_total", ())] == 0
    assert total[("balance_log_lines_lost_total", ())] == 0
    assert sum(wanted[("balance_channel_sent_bytes_total", s.address)] for s in (a, b)) == 201 + 1 + 1000 + 65536 + 200000 + 7


def test_log_lines_a_full_disk_refuses_are_counted_as_lost(start_balance, backends):
    """Log lines stderr does not take (a full disk; here a file size limit at the log's current
    size) are counted in balance_log_lines_lost_total and /status.json, and the proxy goes on."""
    srv = backends(h.EchoServer())
    bal, m = start_with_metrics(start_balance, [srv.address], ["--log-conns"])
    exchange(bal.port, b"written")
    h.wait_for(lambda: "end=client-closed" in bal.stderr(), 10, "the first --log-conns line")
    size = os.path.getsize(bal.stderr_path)
    resource.prlimit(bal.pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
    for _ in range(3):
        exchange(bal.port, b"lost")
    h.wait_for(lambda: m.scrape()[("balance_log_lines_lost_total", ())] == 3, 10, "3 lost log lines")
    assert m.status()["log_lines_lost_total"] == 3
    assert m.scrape()[("balance_log_lines_dropped_total", ())] == 0
    assert os.path.getsize(bal.stderr_path) == size
    assert bal.alive()


def test_failures_refusals_and_admin_state(start_balance, backends):
    """A channel whose backend refuses counts connect failures; when nothing answers the client
    is refused; a disabled channel shows enabled 0; maxc and weight are shown as configured."""
    srv = backends(h.EchoServer())
    dead = f"127.0.0.1:{h.closed_port()}"
    bal, m = start_with_metrics(start_balance, [dead + ":5", srv.address + ":0"])
    exchange(bal.port, b"hello")
    h.wait_for(lambda: m.channel("balance_channel_connect_failures_total", dead) == 1, 10, "one connect failure")
    assert m.channel("balance_channel_max_connections", dead) == 5
    assert m.channel("balance_channel_max_connections", srv.address) == 0
    assert m.channel("balance_channel_weight", srv.address) == 1
    assert m.channel("balance_channel_enabled", srv.address) == 1

    res = bal.ctl("disable 1")
    assert res.rc == 0, res
    h.wait_for(lambda: m.channel("balance_channel_enabled", srv.address) == 0, 10, "channel 1 shown disabled")
    with bal.connect() as c:
        assert h.expect_closed(c) == "eof"
    h.wait_for(lambda: m.scrape()[("balance_refused_connections_total", ())] == 1, 10, "one refused client")
    assert m.scrape()[("balance_accepted_connections_total", ())] == 2
    assert ("balance_channel_up", (("backend", srv.address), ("channel", "1"), ("group", "0"))) not in m.scrape()


def test_promtool_accepts_the_exposition(start_balance, backends, tmp_path):
    """promtool check metrics passes on a scrape with several groups, IPv6 backends, traffic and
    health checks on (so the up series is there too)."""
    promtool = tool("promtool")
    a, b = backends(h.EchoServer()), backends(h.EchoServer())
    chans = [a.address, "!", b.address, f"127.0.0.1:{h.closed_port()}", "%"]
    if h.have_ipv6():
        chans.append(backends(h.EchoServer(family=socket.AF_INET6)).address)
    bal, m = start_with_metrics(start_balance, chans, ["--check", "1", "--rise", "1", "--fall", "1"])
    exchange(bal.port, b"some bytes")
    text = m.text()
    assert "# TYPE balance_channel_up gauge" in text
    if h.have_ipv6():
        assert 'backend="[::1]:' in text
    path = tmp_path / "metrics.txt"
    path.write_text(text)
    with open(path, "rb") as f:
        res = subprocess.run([promtool, "check", "metrics"], stdin=f, capture_output=True,
                             timeout=h.scaled(60))
    assert res.returncode == 0, (res.stdout + res.stderr).decode()
    assert res.stdout.strip() == b"" and res.stderr.strip() == b"", (res.stdout + res.stderr).decode()


def test_health_is_reported_when_checks_are_on(start_balance, backends):
    """With --check, balance_channel_up is 1 for a live backend and goes to 0 for a dead one."""
    srv = backends(h.EchoServer())
    dead = f"127.0.0.1:{h.closed_port()}"
    _, m = start_with_metrics(start_balance, [srv.address, dead], ["--check", "1", "--rise", "1", "--fall", "1"])
    h.wait_for(lambda: m.channel("balance_channel_up", dead) == 0, 15, "the dead channel reported down")
    assert m.channel("balance_channel_up", srv.address) == 1
    status = m.status()
    assert status["checks"] is True
    assert [c["up"] for c in status["groups"][0]["channels"]] == [True, False]


def test_status_json_agrees_with_metrics(start_balance, backends):
    """/status.json carries the same numbers as /metrics, plus each group's type."""
    a, b = backends(h.EchoServer()), backends(h.EchoServer())
    bal, m = start_with_metrics(start_balance, [a.address, "%", b.address + ":3"])
    for _ in range(3):
        exchange(bal.port, b"0123456789")
    bal.wait_no_connections()
    h.wait_for(lambda: m.channel("balance_channel_connections", a.address) == 0, 10, "connections closed")
    status = m.status()
    metrics = m.scrape()
    assert [g["type"] for g in status["groups"]] == ["hash", "round-robin"]
    assert status["accepted_total"] == metrics[("balance_accepted_connections_total", ())] == 3
    assert status["log_lines_dropped_total"] == metrics[("balance_log_lines_dropped_total", ())] == 0
    assert status["log_lines_lost_total"] == metrics[("balance_log_lines_lost_total", ())] == 0
    assert status["checks"] is False and status["threads"] >= 1
    for g in status["groups"]:
        for c in g["channels"]:
            labels = (("backend", c["backend"]), ("channel", str(c["channel"])), ("group", str(g["group"])))
            for key in ("connections", "connections_total", "connect_failures_total", "sent_bytes_total",
                        "received_bytes_total", "max_connections", "weight"):
                assert metrics[(f"balance_channel_{key}", labels)] == c[key], (key, c)
            assert metrics[("balance_channel_enabled", labels)] == (1 if c["enabled"] else 0)
            assert c["up"] is None
    assert status["groups"][0]["channels"][0]["sent_bytes_total"] == 30
    assert status["groups"][1]["channels"][0]["max_connections"] == 3


def test_http_surface(start_balance, backends):
    """GET and HEAD on the three pages; 404 elsewhere; 405 for other methods."""
    srv = backends(h.EchoServer())
    _, m = start_with_metrics(start_balance, [srv.address])
    status, headers, body = http_get(m.port, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<title>balance status</title>" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, headers, body = http_get(m.port, "/metrics", method="HEAD")
    assert status == 200 and body == b""
    for path in ("/favicon.ico", "/metrics/x", "/status", "/../metrics"):
        assert http_get(m.port, path)[0] == 404, path
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        status, headers, _ = http_get(m.port, "/metrics", method=method)
        assert status == 405 and headers["Allow"] == "GET, HEAD", (method, status)
    assert http_get(m.port, "/metrics", method="FOO")[0] == 400


def test_the_body_of_a_get_is_not_held_in_memory(start_balance, backends):
    """A GET followed by a 64 MiB body: the body is never read, so the master does not grow by
    it (it used to take the body for the next request and hold all of it)."""
    srv = backends(h.EchoServer())
    b, m = start_with_metrics(start_balance, [srv.address])
    assert http_get(m.port, "/metrics")[0] == 200  # one-time allocations done
    before = rss_kib(b.pid)
    size = 64 << 20
    with socket.create_connection(("127.0.0.1", m.port), timeout=h.scaled(10)) as s:
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(size // len(chunk)):
                s.sendall(chunk)
        except OSError:  # the server answered and closed without reading the body
            pass
    assert http_get(m.port, "/metrics")[0] == 200
    grown = rss_kib(b.pid) - before
    assert grown < 16 * 1024, f"the master grew by {grown} KiB"


def test_endless_headers_are_not_held_in_memory(start_balance, backends):
    """A GET followed by 32 MiB of short header lines, each within httplib's 8 KiB line limit:
    balance reads 64 KiB of a request at most and closes, so the master does not grow by them
    (it kept every header: 300 MB of them grew it by 5.4 GiB)."""
    srv = backends(h.EchoServer())
    b, m = start_with_metrics(start_balance, [srv.address])
    assert http_get(m.port, "/metrics")[0] == 200  # one-time allocations done
    before = rss_kib(b.pid)
    size = 32 << 20
    chunk = b"X: y\r\n" * (1 << 16)
    sent = 0
    with socket.create_connection(("127.0.0.1", m.port), timeout=h.scaled(30)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        try:
            while sent < size:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection
            pass
    assert sent < size, "the server took 32 MiB of headers"
    assert http_get(m.port, "/metrics")[0] == 200
    grown = rss_kib(b.pid) - before
    assert grown < 16 * 1024, f"the master grew by {grown} KiB"


def raw_answer(port, request):
    """The status line of what the metrics server answers to the raw bytes `request` (b"" when
    it closes with no answer); sending may fail once the server has answered and closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=h.scaled(30)) as s:
        try:
            s.sendall(request)
        except OSError:  # answered and closed before taking all of it
            pass
        got = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                got += data
        except ConnectionResetError:  # the unread rest of the request makes the close a reset
            pass
    return got.split(b"\r\n", 1)[0]


def test_an_overlong_uri_gets_414_at_any_length(start_balance, backends):
    """A request line longer than httplib's 8 KiB gets 414 and a close, also beyond the 64 KiB
    balance reads of a request (that one was closed with no answer at all); headers that do not
    end within the 64 KiB get 400."""
    srv = backends(h.EchoServer())
    _, m = start_with_metrics(start_balance, [srv.address])
    for size in (9000, 60000, 100000, 1 << 20):
        request = b"GET /" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert raw_answer(m.port, request) == b"HTTP/1.1 414 URI Too Long", size
    headers = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 20000 + b"\r\n"
    assert raw_answer(m.port, headers) == b"HTTP/1.1 400 Bad Request"
    assert http_get(m.port, "/metrics")[0] == 200


def test_a_scrape_storm_during_traffic(start_balance, backends):
    """24 threads scraping /metrics and /status.json (20 each) while 4 others push 25
    connections each through the proxy: every scrape is answered 200, every byte comes back as
    sent, and the master's descriptors return to their number before the storm."""
    srv = backends(h.EchoServer())
    b, m = start_with_metrics(start_balance, [srv.address])
    assert http_get(m.port, "/metrics")[0] == 200  # one-time set-up done
    # The answer is complete (Content-Length) before the serving thread closes the connection:
    # counted before that close, the baseline would hold one descriptor the end never has.
    b.wait_no_connections()
    before = b.fd_count()
    failures, lock = [], threading.Lock()

    def scrape(i):
        for n in range(20):
            path = ("/metrics", "/status.json")[(i + n) % 2]
            try:
                status, _, body = http_get(m.port, path, timeout=30)
                ok = status == 200 and body
            except OSError as e:
                ok, status = False, repr(e)
            if not ok:
                with lock:
                    failures.append((path, status))

    def traffic(i):
        for n in range(25):
            payload = os.urandom(1 + (i * 7919 + n * 4099) % (256 << 10))
            try:
                exchange(b.port, payload)
            except (OSError, AssertionError) as e:
                with lock:
                    failures.append(("proxy", repr(e)))

    threads = [threading.Thread(target=scrape, args=(i,)) for i in range(24)]
    threads += [threading.Thread(target=traffic, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(h.scaled(300))
    assert not any(t.is_alive() for t in threads), "the storm did not end"
    assert failures == []
    assert m.status()["accepted_total"] == 100
    h.wait_for(lambda: b.fd_count() == before, 10, f"the master's descriptors back to {before}")


def test_pipelined_requests_get_one_answer_and_a_close(start_balance, backends):
    """Three requests in one send: the first is answered with "Connection: close" and the
    connection ends, so the client sends the others again (they were left unanswered)."""
    srv = backends(h.EchoServer())
    _, m = start_with_metrics(start_balance, [srv.address])
    request = b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", m.port), timeout=h.scaled(10)) as s:
        s.sendall(request * 3)
        got = h.recv_until_eof(s, 10)
    assert got.count(b"HTTP/1.1 200 OK") == 1 and got.count(b"Connection: close") == 1, got[:300]


class SlowClients:
    """Clients that each send the start of a GET, then one more header byte every quarter of a
    second (a header line "X: y" after another: their number is not limited), for at most
    `rounds` rounds or until finish(). `done` is set when they have sent everything."""

    def __init__(self, port, n, rounds=240):
        self.socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(10))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            self.socks.append(s)
        self.rounds = rounds
        self.stop = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self):
        for i in range(self.rounds):
            if self.stop.wait(0.25):  # the pace of a slow client, not a wait for a condition
                return
            for s in self.socks:
                try:
                    s.send(b"X: y\r\n"[i % 6:i % 6 + 1])
                except OSError:
                    pass
        self.done.set()

    def finish(self):
        self.stop.set()
        self.thread.join(h.scaled(30))
        for s in self.socks:
            s.close()


@pytest.mark.parametrize("slow_n, idle_n", [(8, 0), (100, 100)], ids=["8-slow", "100-slow-100-idle"])
def test_slow_clients_do_not_hold_up_a_scrape(start_balance, backends, slow_n, idle_n):
    """Clients sending their headers a byte at a time (8: twice the serving threads; 100), and
    clients that connect and send nothing: the requests are read side by side, and a serving
    thread is given only one that came in whole, so a scrape behind them is answered while they
    still send. (httplib bounded each read only: a scrape waited a minute behind 8 of them;
    then, with each held for 10 s, 250 s behind a hundred.)"""
    srv = backends(h.EchoServer())
    _, m = start_with_metrics(start_balance, [srv.address])
    slow = SlowClients(m.port, slow_n)
    idle = [socket.create_connection(("127.0.0.1", m.port), timeout=h.scaled(10)) for _ in range(idle_n)]
    try:
        status, _, body = http_get(m.port, "/metrics", timeout=90)
        assert status == 200 and b"balance_worker_threads" in body
        assert not slow.done.is_set(), "the scrape was answered only once the slow clients had stopped"
    finally:
        slow.finish()
        for s in idle:
            s.close()


def test_a_slow_client_does_not_hold_up_the_stop(start_balance, backends):
    """SIGTERM while a client sends its request a byte at a time: balance exits at once, cutting
    that client, instead of waiting for its request to end (it did: a minute here, for ever if
    the client goes on)."""
    srv = backends(h.EchoServer())
    bal, m = start_with_metrics(start_balance, [srv.address])
    slow = SlowClients(m.port, 1)
    try:
        assert http_get(m.port, "/metrics")[0] == 200  # the server is serving
        bal.proc.send_signal(signal.SIGTERM)
        assert bal.wait_exit(90) == 0
        assert not slow.done.is_set(), "balance exited only once the slow client had stopped"
    finally:
        slow.finish()


def test_idle_connections_to_the_metrics_port_leave_descriptors_for_the_data_path(start_balance, backends):
    """600 connections to the metrics port that send nothing, against a master allowed 512
    descriptors: it holds a bounded number of them (the rest wait in the kernel's backlog), so
    clients of the data path are all served meanwhile. (Every connection used to be accepted
    and queued for a serving thread: the master ran out of descriptors and shed every client.)"""
    prlimit = tool("prlimit")
    srv = backends(h.EchoServer())
    mport, port = h.free_port(), h.free_port()
    b = start_balance(port, [srv.address], ["--metrics", f"127.0.0.1:{mport}"], start=False)
    b.cmd = [prlimit, "--nofile=512:512", *b.cmd]  # prlimit execs balance: the same pid
    b.start()
    Metrics(b, mport)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    idle = []
    try:
        for _ in range(600):
            try:
                idle.append(socket.create_connection(("127.0.0.1", mport), timeout=h.scaled(2)))
            except OSError:  # the backlog is full: what is asked is already more than it holds
                break
        for i in range(20):
            exchange(port, b"data path %d" % i)
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not h.have_ipv6(), reason="no IPv6 loopback")
def test_serves_on_ipv6(start_balance, backends):
    """--metrics [::1]:PORT listens on IPv6."""
    srv = backends(h.EchoServer())
    mport, port = h.free_port(), h.free_port()
    b = start_balance(port, [srv.address], ["--metrics", f"[::1]:{mport}"])
    m = Metrics(b, mport, host="::1")
    assert m.scrape()[("balance_worker_threads", ())] >= 1


@pytest.mark.parametrize("foreground", [True, False], ids=["foreground", "daemon"])
@pytest.mark.parametrize("mmap", [False, True], ids=["shm", "mmap"])
def test_metrics_port_in_use_exits_71(binary, rundir, backends, foreground, mmap):
    """When the --metrics port is taken, balance says so in one line, exits 71 and leaves no
    control segment behind."""
    srv = backends(h.EchoServer())
    holder = backends(h.PortHolder())
    port = h.free_port()
    args = (["-f"] if foreground else []) + (["-M"] if mmap else [])
    args += ["--metrics", f"127.0.0.1:{holder.port}", str(port), srv.address]
    res = h.run(args, rundir=rundir, timeout=20)
    try:
        assert res.rc == 71, res
        assert res.stderr == f"cannot listen for --metrics on 127.0.0.1:{holder.port}: Address already in use, exiting.\n"
        assert not h.listening_pids(port)
        assert not os.path.exists(h.segment_path(port, rundir, mmap))
    finally:
        if res.rc == 0:
            h.run(["-c", "kill", str(port)], rundir=rundir, timeout=20)
