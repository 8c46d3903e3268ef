"""Two control clients changing the table at once while traffic flows: the master survives, no
client sees an error, every connection is served, and the connection counts return to 0."""

import re
import threading

import pytest

import harness as h

# What each command may print (the other client's changes never make these fail).
EXPECTED = {
    "disable": re.compile(r"channel \d disabled\n"),
    "enable": re.compile(r"channel \d enabled\n"),
    "maxc": re.compile(r"maxc of channel \d changed to \d\n"),
    "reset": re.compile(r"channel \d counters reset\n"),
    "hash": re.compile(r"group 0 set to hash\n"),
    "rr": re.compile(r"group 0 set to round robin\n"),
    "show": re.compile(r"GRP Type .*\n(( +\d+ +(RR|Hash) +\d+ (ENA|dis) .*\n){3})"),
    "mrtg-bytes": re.compile(r"\d+\n\d+\nUNKNOWN\ngroup 0 channel \d\n"),
    "mrtg-conns": re.compile(r"\d+\nUNKNOWN\nUNKNOWN\ngroup 0 channel \d\n"),
    "version": re.compile(r"  This is balance .*\n  MAXGROUPS=32\n  MAXCHANNELS=64\n"),
}

# Client A works on channel 0 through many `-c` runs; client B on channel 1 in one `-i` session.
SCRIPT_A = ["disable 0", "show", "enable 0", "maxc 0 1", "mrtg-bytes 0 0", "maxc 0 0", "reset 0", "hash",
            "rr"]
SCRIPT_B = ["disable 1", "enable 1", "maxc 1 2", "show", "maxc 1 0", "mrtg-conns 0 1", "reset 1", "version"]


class Traffic(threading.Thread):
    """Asks the balancer for a backend name over and over until stopped; records failures."""

    def __init__(self, port, names):
        super().__init__(daemon=True)
        self.port, self.names = port, names
        self.stop = threading.Event()
        self.served = 0
        self.errors = []

    def run(self):
        while not self.stop.wait(0.005):  # paced, so loopback ports are not used up
            try:
                name = h.ask_name(self.port, timeout=10)
                if name not in self.names:
                    self.errors.append(f"unexpected name {name!r}")
                self.served += 1
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))


def check_outputs(commands, outputs):
    for cmd, out in zip(commands, outputs):
        assert EXPECTED[cmd.split()[0]].fullmatch(out), (cmd, out)


@pytest.mark.parametrize("mmap", [False, True], ids=["shm", "mmap"])
def test_two_clients_hammer_while_traffic_flows(start_balance, backends, rundir, mmap):
    """Client A (60 `-c` runs) and client B (piped `-i` sessions of 200 commands, one after the
    other until A is done) change channels 0 and 1 of group 0 while four threads keep
    connecting; a fallback group keeps every connection servable."""
    servers = [backends(h.NameServer(n)) for n in ("b1", "b2", "b3")]
    port = h.free_port()
    flags = ["-M"] if mmap else []
    b = start_balance(port, [h.channel(servers[0].port), h.channel(servers[1].port), "!",
                             h.channel(servers[2].port)], opts=flags)
    traffic = [Traffic(port, {"b1", "b2", "b3"}) for _ in range(4)]
    for t in traffic:
        t.start()

    script_b = [SCRIPT_B[i % len(SCRIPT_B)] for i in range(200)]
    sessions = []
    a_done = threading.Event()

    def client_b():
        while not a_done.is_set() or not sessions:
            sessions.append(h.run([*flags, "-i", str(port)], rundir=rundir, timeout=60,
                                  stdin_data=("\n".join(script_b) + "\n").encode()))

    shell = threading.Thread(target=client_b, daemon=True)
    shell.start()
    commands_a = [SCRIPT_A[i % len(SCRIPT_A)] for i in range(60)]
    outputs_a = []
    for cmd in commands_a:
        r = h.ctl(port, cmd, rundir=rundir, extra_args=flags)
        assert (r.rc, r.stderr) == (0, ""), (cmd, r)
        outputs_a.append(r.stdout)
    a_done.set()
    shell.join(h.scaled(120))
    for t in traffic:
        t.stop.set()
    for t in traffic:
        t.join(h.scaled(30))

    check_outputs(commands_a, outputs_a)
    assert not shell.is_alive()
    for r in sessions:
        assert (r.rc, r.stderr) == (0, ""), r
        replies = r.stdout.split("balance[0] ")[1:]  # the banner comes before the first prompt
        assert replies[-1] == "\n" and len(replies) == len(script_b) + 1
        check_outputs(script_b, replies[:-1])
    assert all(not t.errors for t in traffic), [t.errors[:3] for t in traffic]
    assert sum(t.served for t in traffic) > 0
    assert b.alive()

    def settled():
        rows = h.parse_show(h.ctl(port, "show", rundir=rundir, extra_args=flags).stdout)
        return len(rows) == 3 and all(row["c"] == 0 for row in rows) and rows
    rows = h.wait_for(settled, 15, "every channel's c back to 0")
    assert [row["state"] for row in rows] == ["ENA", "ENA", "ENA"]
    assert [row["maxc"] for row in rows] == [0, 0, 0]
