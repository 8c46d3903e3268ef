"""Maglev hashing for `%` groups (issue 6), through the binary: instances with the same channels
map each client address alike, and with -H only the clients of a lost channel move.

Clients come from different source addresses in 127.0.0.0/8 (all on loopback), so balance
sees different client addresses."""

import collections
import socket

import pytest

import harness as h

SOURCES = [f"127.0.0.{i}" for i in range(2, 41)]


def ask_name_from(port, source):
    """The backend name a client bound to `source` reaches through balance on `port`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(h.scaled(10))
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        return h.recv_until(s, b"\n").decode().rstrip("\n")
    finally:
        s.close()


def mapping(port):
    """source address -> backend name, one connection per source."""
    return {src: ask_name_from(port, src) for src in SOURCES}


@pytest.fixture
def channels(backends):
    """Four named backends s0..s3."""
    return [backends(h.NameServer(f"s{i}")) for i in range(4)]


def test_two_instances_map_clients_alike(start_balance, channels):
    """Two instances given the same channels -- one of them in reverse order -- send every client
    address to the same backend, each time it connects."""
    first, second = h.free_port(), h.free_port()
    start_balance(first, [s.address for s in channels] + ["%"])
    start_balance(second, [s.address for s in reversed(channels)] + ["%"])
    on_first = mapping(first)
    assert mapping(second) == on_first
    assert len(set(on_first.values())) >= 3, on_first  # 39 clients spread over the channels
    for src in SOURCES[:5]:
        assert [ask_name_from(first, src) for _ in range(3)] == [on_first[src]] * 3


def test_hash_failover_moves_only_the_lost_channels_clients(start_balance, backends, channels):
    """With -H, disabling a channel moves exactly its clients, to the group's other channels,
    and they come back when it is enabled again. Without -H they go to the next group."""
    fallback = backends(h.NameServer("fallback"))
    group = [s.address for s in channels] + ["%", fallback.address]
    with_h, without_h = h.free_port(), h.free_port()
    bal_h = start_balance(with_h, group, opts=["-H"])
    bal = start_balance(without_h, group)
    before = mapping(with_h)
    assert mapping(without_h) == before  # every channel usable: -H changes nothing

    lost, _ = collections.Counter(before.values()).most_common(1)[0]
    index = [s.name for s in channels].index(lost)
    for b in (bal_h, bal):
        assert b.ctl(f"disable {index}").stdout.strip() == f"channel {index} disabled"
    during_h = mapping(with_h)
    during = mapping(without_h)
    for src in SOURCES:
        if before[src] == lost:
            assert during_h[src] not in (lost, "fallback"), (src, during_h[src])
            assert during[src] == "fallback", (src, during[src])
        else:
            assert during_h[src] == before[src], f"{src} moved from {before[src]} to {during_h[src]}"
            assert during[src] == before[src], f"{src} moved from {before[src]} to {during[src]}"

    for b in (bal_h, bal):
        assert b.ctl(f"enable {index}").stdout.strip() == f"channel {index} enabled"
    assert mapping(with_h) == before
    assert mapping(without_h) == before


@pytest.mark.parametrize("opts", [[], ["-H"]], ids=["plain", "H"])
def test_a_created_channel_moves_no_client_until_enabled(start_balance, backends, channels, opts):
    """`create` adds a channel disabled ("enable it when it is ready"): until then every client
    keeps its backend -- none is refused, none moves (with -H none is sent elsewhere in the group
    first, then moved again on `enable`). Once enabled, the new channel takes its share."""
    fresh = backends(h.NameServer("s4"))
    port = h.free_port()
    bal = start_balance(port, [s.address for s in channels] + ["%"], opts=opts)
    before = mapping(port)
    host, fresh_port = fresh.address.rsplit(":", 1)
    assert bal.ctl(f"create {host} {fresh_port}").stdout.strip() == "channel created"
    assert mapping(port) == before
    assert bal.ctl("enable 4").stdout.strip() == "channel 4 enabled"
    after = mapping(port)
    assert "s4" in after.values(), after  # 39 clients, a fifth of the table each way
