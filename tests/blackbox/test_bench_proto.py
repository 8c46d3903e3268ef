"""bench/proto/relay_proto, the io_uring experiment of docs/PERFORMANCE.md: every I/O mode relays
bytes both ways intact, with half-close, and stops cleanly on SIGTERM with no listener left
behind (a lingering io_uring listener resets the connections of a successor on the same port).

Skipped when relay_proto was not built (no liburing) or, per io_uring mode, when the kernel
refuses io_uring (kernel.io_uring_disabled, a seccomp filter).
"""

import hashlib
import os
import signal
import socket
import subprocess

import pytest

import harness

MODES = ["", "--uring", "--multishot", "--hybrid", "--sync-send", "--ring-send"]


def _listening(port):
    # The kernel's table, not harness.listening_pids(): a listener that outlives its process
    # (held by a ring being torn down) belongs to no process's descriptors.
    return any(s.state == "LISTEN" and s.local[1] == port for s in harness.tcp_table())


@pytest.fixture
def proto():
    return harness.built_binary("RELAY_PROTO_BIN", "relay_proto", " (needs liburing-dev)")


@pytest.mark.parametrize("mode", MODES, ids=[m.lstrip("-") or "epoll" for m in MODES])
def test_every_mode_relays_both_ways_and_stops_cleanly(proto, backends, mode):
    echo1 = backends(harness.EchoServer())
    echo2 = backends(harness.EchoServer())
    port = harness.free_port()
    argv = [proto] + ([mode] if mode else []) + [
        "-f", "--threads", "2", "-b", "127.0.0.1", str(port), echo1.address, echo2.address]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        harness.wait_for(lambda: proc.poll() is not None or _listening(port), 10, "relay_proto to listen")
        if proc.poll() is not None:
            err = proc.stderr.read()
            if "io_uring" in err and mode:
                pytest.skip(f"io_uring refused here: {err.strip()}")
            pytest.fail(f"relay_proto exited with {proc.returncode}: {err.strip()}")

        payloads = [os.urandom(1 + i * 7919) for i in range(20)]  # 1 byte up to about 150 KB
        for data in payloads:
            with harness.connect(port) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                got = harness.recv_until_eof(s)
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), \
                f"{len(data)} bytes sent, {len(got)} came back"
        # Round robin: both backends took connections.
        assert echo1.connection_count() >= 1 and echo2.connection_count() >= 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=harness.scaled(10))
        proc.stderr.close()
    assert rc == 0
    assert not _listening(port), "a listener outlived the process"



KERNEL_COSTS_LINES = [
    "syscall (getppid)", "pipe round trip, one CPU", "pipe round trip, two CPUs",
    "recv, nothing to read (EAGAIN)", "accept4, nothing queued (EAGAIN)",
    "getsockopt TCP_INFO on a listener (its queue's length)", "epoll_wait, one socket ready",
    "epoll_ctl ADD and DEL of a connected socket", "epoll_ctl MOD of a connected socket",
    "timer per connection, timerfd (create, epoll_ctl, arm, disarm, close)",
    "timer per connection, wheel (schedule, cancel)",
    "loopback connection, a new socket (socket, options, connect, close)",
    "loopback connection, a kept socket (connect, disconnect_if_over)",
]


@pytest.fixture
def kernel_costs():
    return harness.built_binary("KERNEL_COSTS_BIN", "kernel_costs")


def test_kernel_costs_prices_every_call(kernel_costs):
    """bench/proto/kernel_costs (the price list of PERFORMANCE.md): every line, each a positive
    number; each call behaved as expected (an empty recv and accept4 said EAGAIN, the ready
    socket was reported), or it would exit 1."""
    r = subprocess.run([kernel_costs, "200"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    prices = dict(line.rsplit(": ", 1) for line in r.stdout.splitlines())
    # (the two-CPU round trip is left out where this process may run on one CPU only)
    assert set(prices) | {"pipe round trip, two CPUs"} == set(KERNEL_COSTS_LINES)
    for name, value in prices.items():
        number, unit = value.split(" ")
        assert float(number) > 0 and unit in ("ns", "us"), f"{name}: {value}"


@pytest.mark.parametrize("arg", ["0", "-5", "lots", "200000000"])
def test_kernel_costs_rejects_a_bad_count(kernel_costs, arg):
    r = subprocess.run([kernel_costs, arg], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: kernel_costs") and len(r.stderr.splitlines()) == 1
