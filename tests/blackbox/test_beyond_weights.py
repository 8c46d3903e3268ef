"""Channel weights (host:port:maxc:weight, issue 6) in a round-robin group: shares and the
smooth order, seen from clients."""

import harness as h


def names_of(port, n):
    """The backend names that n sequential clients of `port` are connected to."""
    return [h.ask_name(port) for _ in range(n)]


def test_weights_one_to_three_share_4000_connections(start_balance, backends):
    """Weights 1:3 give 4,000 sequential connections a 1:3 share (within 5%), and the heavy
    channel's turns are spread out: every four consecutive clients include the light one once."""
    a = backends(h.NameServer("a"))
    b = backends(h.NameServer("b"))
    port = h.free_port()
    start_balance(port, [f"{a.address}::1", f"{b.address}::3"])
    names = names_of(port, 4000)
    assert abs(names.count("a") - 1000) <= 50, names.count("a")
    assert abs(names.count("b") - 3000) <= 150, names.count("b")
    assert names.count("a") + names.count("b") == 4000
    bunched = [i for i in range(len(names) - 3) if names[i:i + 4].count("a") != 1]
    assert not bunched, f"windows of four without exactly one 'a' at {bunched[:10]}: {names[:40]}"


def test_equal_weights_keep_the_classic_order(start_balance, backends):
    """Equal weights other than 1 change nothing: strict turns, as without weights."""
    servers = [backends(h.NameServer(f"s{i}")) for i in range(3)]
    port = h.free_port()
    start_balance(port, [f"{s.address}::5" for s in servers])
    assert names_of(port, 6) == ["s0", "s1", "s2"] * 2


def test_disabled_heavy_channel_leaves_the_others_their_shares(start_balance, backends):
    """With weights 1:2:3 and the heaviest channel disabled, the other two share clients 1:2."""
    servers = [backends(h.NameServer(f"s{i}")) for i in range(3)]
    port = h.free_port()
    bal = start_balance(port, [f"{s.address}::{w}" for s, w in zip(servers, (1, 2, 3))])
    assert bal.ctl("disable 2").rc == 0
    names = names_of(port, 300)
    assert (names.count("s0"), names.count("s1"), names.count("s2")) == (100, 200, 0)
