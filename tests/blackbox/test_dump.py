"""The -p packet dump on stdout (COMPAT.md, "Data transfer"), for a known exchange."""

import socket

import pytest

import harness as h


def reference_dump(arrow, data):
    """The dump block COMPAT.md specifies for one read of `data` ("->" client, "-<" server)."""
    out = [f"{arrow} {len(data)}\n"]
    column = 0
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
            column += 2
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
            column += 1
        else:
            out.append("\\%02X" % b)
            column += 3
            if b == 0x0A:
                out.append("\n")
                column = 0
        if column > 80:
            out.append("\n")
            column = 0
    out.append("\n")
    return "".join(out)


def test_reference_dump_matches_compat_example():
    """The reference formatter used below reproduces the body of COMPAT.md's own example.

    (COMPAT.md's header says `-> 27`, but the example's data is 24 bytes; the rule "N = bytes
    read" is followed here, so the header is `-> 24`.)
    """
    data = b"hello\\world\x01\x7f\xff\tend\nline2"
    assert len(data) == 24
    assert reference_dump("->", data) == "-> 24\nhello\\\\world\\01\\7F\\FF\\09end\\0A\nline2\n"


def test_packet_dump_of_known_exchange(start_balance, backends):
    """With -fp every block read from the client (`-> N`) and from the server (`-< N`) is dumped
    exactly in the COMPAT.md format, including the end-of-stream blocks."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    bal = start_balance(port, [srv.address], flags="-fp")
    messages = [
        b"hello\\world\x01\x7f\xff\tend\nline2",           # COMPAT.md's example
        bytes(range(256)),                                  # every byte value, wraps at 80 columns
        b"A" * 100 + b"\\" * 30 + b"\n",                   # long printable run, ends with a newline
    ]
    with h.connect(port) as c:
        for m in messages:
            c.sendall(m)
            assert h.recv_exact(c, len(m)) == m
        c.shutdown(socket.SHUT_WR)
        assert h.recv_until_eof(c) == b""
    expected = "".join(reference_dump("->", m) + reference_dump("-<", m) for m in messages)
    expected += reference_dump("->", b"") + reference_dump("-<", b"")
    try:
        h.wait_for(lambda: len(bal.stdout_bytes()) >= len(expected.encode()), 10, "the complete dump on stdout")
    finally:
        got = bal.stdout()
    assert got == expected


def test_end_of_stream_is_dumped_when_the_fin_comes_with_the_data(start_balance, backends):
    """A client that sends and ends its stream at once (the FIN arrives with its bytes, which
    balance then takes without a read that returns 0) still gets its `-> 0` block. It was left
    out in that case."""
    srv = backends(h.EchoServer())
    port = h.free_port()
    bal = start_balance(port, [srv.address], flags="-fp")
    message = b"quick and gone"
    rounds = 10
    for _ in range(rounds):
        with h.connect(port) as c:
            c.sendall(message)
            c.shutdown(socket.SHUT_WR)
            assert h.recv_until_eof(c) == message
    blocks = [reference_dump("->", message), reference_dump("-<", message),
              reference_dump("->", b""), reference_dump("-<", b"")]
    size = rounds * sum(len(b) for b in blocks)
    try:
        h.wait_for(lambda: len(bal.stdout_bytes()) >= size, 10, "the complete dump on stdout")
    finally:
        got = bal.stdout()
    # The two directions' blocks interleave as the bytes happen to arrive; each must be there.
    assert [got.count(b) for b in blocks] == [rounds] * 4, got
    assert len(got) == size, got


def test_a_dump_past_the_file_size_limit_does_not_stop_the_proxy(start_balance, backends):
    """stdout a file that reaches the process's file size limit (`ulimit -f`, systemd's
    LimitFSIZE=): the dump stops growing, the connections go on being served. Before, the first
    write past the limit raised SIGXFSZ, whose default action killed balance and every
    connection with it (as a full disk does not: there the write just fails)."""
    resource = pytest.importorskip("resource")
    srv = backends(h.EchoServer())
    port = h.free_port()
    bal = start_balance(port, [srv.address], flags="-fp")
    resource.prlimit(bal.pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    for i in range(5):
        with h.connect(port) as c:
            payload = b"%d" % i * 3000
            c.sendall(payload)
            assert h.recv_exact(c, len(payload)) == payload, f"connection {i}"
            c.shutdown(socket.SHUT_WR)
            assert h.recv_until_eof(c) == b""
    assert bal.alive(), f"balance exited with {bal.proc.poll()}"
    assert len(bal.stdout_bytes()) == 4096
