"""A client that opens many connections, makes one HTTP exchange on each and keeps them open.

Used by the idle-memory and concurrency-hold workloads: each connection is established end to
end (the exchange proves the proxy connected it to a backend) and then left idle, the backends'
keep-alive holding the other side.
"""
import errno
import random
import select
import socket
import statistics
import time

REQUEST = b"GET /index.html HTTP/1.1\r\nHost: bench\r\n\r\n"
IN_FLIGHT = 256           # connections being opened at once


def _complete(buf):
    """True once buf holds a whole HTTP response (headers and Content-Length body)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    length = 0
    for line in buf[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return len(buf) >= head_end + 4 + length


class _Opening:
    def __init__(self, sock):
        self.sock, self.buf, self.sent = sock, b"", False


def open_many(port, count, timeout):
    """Opens count connections to 127.0.0.1:port, one exchange each, within timeout seconds.

    Returns (open sockets, {error reason: count}); failed connections are closed.
    """
    ep = select.epoll()
    held, errors, pending = [], {}, {}
    started, deadline = 0, time.monotonic() + timeout

    def fail(op, reason):
        errors[reason] = errors.get(reason, 0) + 1
        ep.unregister(op.sock.fileno())
        del pending[op.sock.fileno()]
        op.sock.close()

    try:
        while (started < count or pending) and time.monotonic() < deadline:
            while started < count and len(pending) < IN_FLIGHT:
                started += 1
                s = socket.socket()
                s.setblocking(False)
                rc = s.connect_ex(("127.0.0.1", port))
                if rc not in (0, errno.EINPROGRESS):
                    errors[errno.errorcode.get(rc, str(rc))] = errors.get(errno.errorcode.get(rc, str(rc)), 0) + 1
                    s.close()
                    continue
                pending[s.fileno()] = _Opening(s)
                ep.register(s.fileno(), select.EPOLLOUT)
            for fd, _ in ep.poll(0.2):
                op = pending[fd]
                if not op.sent:
                    err = op.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(op, errno.errorcode.get(err, str(err)))
                        continue
                    op.sock.send(REQUEST)
                    op.sent = True
                    ep.modify(fd, select.EPOLLIN)
                    continue
                try:
                    chunk = op.sock.recv(65536)
                except OSError as e:
                    fail(op, errno.errorcode.get(e.errno, str(e.errno)))
                    continue
                if not chunk:
                    fail(op, "closed before the response")
                    continue
                op.buf += chunk
                if _complete(op.buf):
                    if not op.buf.startswith(b"HTTP/1.1 200"):
                        fail(op, "not 200")
                        continue
                    ep.unregister(fd)
                    del pending[fd]
                    held.append(op.sock)
        for op in list(pending.values()):
            fail(op, "timeout")
        if started < count:
            errors["not attempted (timeout)"] = count - started
    finally:
        ep.close()
    return held, errors


def exchange(sock, timeout=5.0):
    """One request/response on an open idle connection; returns seconds, or None on error."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    try:
        t0 = time.perf_counter()
        sock.sendall(REQUEST)
        buf = b""
        while not _complete(buf):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        return time.perf_counter() - t0
    except OSError:
        return None
    finally:
        sock.setblocking(False)


def closed_count(socks):
    """How many of the idle sockets the far side has closed or reset (readable while idle)."""
    ep = select.epoll()
    try:
        for s in socks:
            ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        return len(ep.poll(0.1, maxevents=len(socks) or 1))
    finally:
        ep.close()


def close_all(socks):
    for s in socks:
        s.close()


def probe(socks, count, spread_seconds):
    """count exchanges on randomly chosen sockets spread over spread_seconds.

    Returns (latencies in ms, errors).
    """
    rng = random.Random(4)
    lat, errors = [], 0
    gap = spread_seconds / max(count, 1)
    for _ in range(count):
        t = exchange(rng.choice(socks))
        if t is None:
            errors += 1
        else:
            lat.append(t * 1000)
        time.sleep(gap)
    return lat, errors


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
