"""The PROXY protocol toward backends (--proxy-protocol v1|v2, issue 6): a backend that parses
the header (HAProxy's specification) learns the real client address and port, and then gets
the client's bytes intact."""

import hashlib
import ipaddress
import os
import socket
import struct
import threading

import pytest

import harness as h

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest v1 line, CRLF included


class HeaderError(Exception):
    pass


class ProxyServer(h._Server):
    """A backend that reads a PROXY header (v1 or v2) at the start of each connection, records
    it as rec.proxy (a dict), records the bytes that follow in rec.received, and echoes them."""

    def handle(self, conn, rec):
        buf = bytearray()
        try:
            rec.proxy, rest = parse_header(conn, buf)
        except HeaderError as e:
            rec.proxy = {"error": str(e), "raw": bytes(buf)}
            return
        h_all = hashlib.sha256()
        chunk = rest
        while True:
            if chunk:
                h_all.update(chunk)
                rec.received_bytes += len(chunk)
                if len(rec.received) < self.keep_limit:
                    rec.received += chunk[: self.keep_limit - len(rec.received)]
                conn.sendall(chunk)
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
        rec.got_eof.set()
        rec.received_sha256 = h_all.hexdigest()
        conn.shutdown(socket.SHUT_WR)


def fill(conn, buf, n):
    """Reads until buf holds at least n bytes; HeaderError at end of stream."""
    while len(buf) < n:
        chunk = conn.recv(4096)
        if not chunk:
            raise HeaderError(f"end of stream after {len(buf)} bytes")
        buf += chunk


def parse_header(conn, buf):
    """Reads and parses one PROXY header; returns (fields, the bytes read past it)."""
    fill(conn, buf, 1)
    if buf[:1] == b"P":
        return parse_v1(conn, buf)
    if buf[:1] == b"\r":
        return parse_v2(conn, buf)
    raise HeaderError(f"not a PROXY header: {bytes(buf[:16])!r}")


def parse_v1(conn, buf):
    """`PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n` (or `PROXY UNKNOWN ...\\r\\n`)."""
    while b"\r\n" not in buf:
        if len(buf) >= V1_MAX:
            raise HeaderError(f"v1 line longer than {V1_MAX} bytes")
        fill(conn, buf, len(buf) + 1)
    end = buf.index(b"\r\n") + 2
    line = bytes(buf[:end])
    words = line[:-2].decode("ascii").split(" ")
    if words[0] != "PROXY":
        raise HeaderError(f"bad v1 line {line!r}")
    fields = {"version": 1, "line": line, "proto": words[1]}
    if words[1] in ("TCP4", "TCP6"):
        if len(words) != 6:
            raise HeaderError(f"bad v1 line {line!r}")
        family = ipaddress.IPv4Address if words[1] == "TCP4" else ipaddress.IPv6Address
        fields.update(src=str(family(words[2])), dst=str(family(words[3])),
                      sport=int(words[4]), dport=int(words[5]))
    return fields, bytes(buf[end:])


def parse_v2(conn, buf):
    """The binary header: signature, version/command, family/protocol, length, addresses, TLVs."""
    fill(conn, buf, 16)
    if bytes(buf[:12]) != V2_SIGNATURE:
        raise HeaderError(f"bad v2 signature {bytes(buf[:12])!r}")
    ver_cmd, fam, length = buf[12], buf[13], struct.unpack("!H", buf[14:16])[0]
    fill(conn, buf, 16 + length)
    body = bytes(buf[16:16 + length])
    fields = {"version": ver_cmd >> 4, "command": ver_cmd & 0xF, "family": fam >> 4,
              "transport": fam & 0xF, "length": length}
    if fam == 0x11:  # TCP over IPv4
        if length < 12:
            raise HeaderError("v2 IPv4 body too short")
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        fields.update(proto="TCP4", src=socket.inet_ntop(socket.AF_INET, src),
                      dst=socket.inet_ntop(socket.AF_INET, dst), sport=sport, dport=dport)
    elif fam == 0x21:  # TCP over IPv6
        if length < 36:
            raise HeaderError("v2 IPv6 body too short")
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        fields.update(proto="TCP6", src=socket.inet_ntop(socket.AF_INET6, src),
                      dst=socket.inet_ntop(socket.AF_INET6, dst), sport=sport, dport=dport)
    return fields, bytes(buf[16 + length:])


# (client family, -b address or None, address the client connects to, the addresses the header
# must carry). Without -b balance listens dual stack: an IPv4 client arrives IPv4-mapped, and
# the header carries it as plain IPv4.
CLIENTS = {
    "ipv4-dual-stack": (socket.AF_INET, None, "127.0.0.1", "TCP4", "127.0.0.1"),
    "ipv6-dual-stack": (socket.AF_INET6, None, "::1", "TCP6", "::1"),
    "ipv4-bound": (socket.AF_INET, "127.0.0.1", "127.0.0.1", "TCP4", "127.0.0.1"),
    "ipv6-bound": (socket.AF_INET6, "::1", "::1", "TCP6", "::1"),
}


def exchange(port, family, host, payload):
    """Sends payload from a new client (in a thread, while reading), half-closes, and returns
    (client source port, the bytes echoed back until EOF)."""
    with h.connect(port, family, host) as c:
        sport = c.getsockname()[1]
        errors = []

        def send():
            try:
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        echoed = h.recv_until_eof(c, 20)
        t.join(timeout=h.scaled(10))
        assert not errors, errors
        return sport, echoed


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_backend_learns_the_client_address(start_balance, backends, version, client):
    """The backend gets a PROXY header naming the client's address and port and the address and
    port it reached, then the client's bytes unchanged (even bytes that look like a header)."""
    family, bind, host, proto, addr = CLIENTS[client]
    if family == socket.AF_INET6 and not h.have_ipv6():
        pytest.skip("no IPv6 on loopback")
    server = backends(ProxyServer())
    port = h.free_port()
    opts = ["--proxy-protocol", version] + (["-b", bind] if bind else [])
    start_balance(port, [server.address], opts=opts, listen_address=bind)
    payload = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + V2_SIGNATURE + os.urandom(200_000)

    sport, echoed = exchange(port, family, host, payload)

    rec = server.wait_connections(1)[0]
    assert rec.ended.wait(h.scaled(10)), "the backend connection did not end"
    fields = rec.proxy
    assert "error" not in fields, fields
    assert (fields["proto"], fields["src"], fields["dst"], fields["sport"], fields["dport"]) == \
        (proto, addr, addr, sport, port)
    if version == "v1":
        assert fields["line"] == f"PROXY {proto} {addr} {addr} {sport} {port}\r\n".encode()
    else:
        assert (fields["version"], fields["command"], fields["transport"]) == (2, 1, 1)  # PROXY, STREAM
        assert fields["length"] == (12 if proto == "TCP4" else 36)
    assert rec.received_bytes == len(payload)
    assert bytes(rec.received) == payload
    assert echoed == payload


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_connection_gets_its_own_header(start_balance, backends, version):
    """Each of several clients, from different source ports, gets a header with its own port."""
    server = backends(ProxyServer())
    port = h.free_port()
    start_balance(port, [server.address], opts=["--proxy-protocol", version])
    sports = []
    for i in range(5):
        sport, echoed = exchange(port, socket.AF_INET, "127.0.0.1", b"client %d\n" % i)
        assert echoed == b"client %d\n" % i
        sports.append(sport)
    records = server.wait_connections(5)
    for rec in records:
        assert rec.ended.wait(h.scaled(10))
    assert sorted(rec.proxy["sport"] for rec in records) == sorted(sports)
    assert all(rec.proxy["dport"] == port and rec.proxy["src"] == "127.0.0.1" for rec in records)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_health_checks_send_the_header_of_a_connection_of_balance_s_own(start_balance, backends, version):
    """With --check, each check connection starts with the header the specification gives for a
    connection the proxy makes on its own (v1 `PROXY UNKNOWN`, v2 the LOCAL command with no
    addresses), as HAProxy's checks of a send-proxy server do: a backend that requires the header
    sees well-formed connections. (Before: a check connected and closed without a byte, which a
    backend expecting the header logs as a broken or missing one.)"""
    server = backends(ProxyServer())
    port = h.free_port()
    start_balance(port, [server.address], opts=["--proxy-protocol", version, "--check", "1"])
    checks = server.wait_connections(2, timeout=15)  # no client: these are the health checks
    for rec in checks:
        assert rec.ended.wait(h.scaled(10)), "a check connection did not end"
        assert "error" not in rec.proxy, rec.proxy
        if version == "v1":
            assert rec.proxy["line"] == b"PROXY UNKNOWN\r\n", rec.proxy
        else:
            assert (rec.proxy["version"], rec.proxy["command"], rec.proxy["family"], rec.proxy["length"]) == \
                (2, 0, 0, 0), rec.proxy
        assert rec.received_bytes == 0
