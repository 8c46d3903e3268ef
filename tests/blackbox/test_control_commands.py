"""Control commands (COMPAT.md, "Control commands"): golden output of every command, message and
abbreviation through `-c` and a piped `-i` session, with POSIX shm and with -M, and the effect
of each change on the next accepted connection."""

import os
import re
import subprocess
import tempfile

import pytest

import harness as h

HEADER = "GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd"

HELP = """\
  create <host> <port>           creates a channel in the current group
  assign <channel> <host> <port> gives a disabled channel a new address
  disable <channel>              disables a channel of the current group
  enable <channel>               enables a channel of the current group
  group <group>                  makes <group> the current group
  hash                           sets the current group to hash distribution
  help                           prints this list of commands
  kill                           stops the master process and leaves the shell
  maxc <channel> <maxc>          sets the connection limit of a channel (0 = none)
  mrtg-bytes <group> <channel>   prints bytes received/sent for MRTG
  mrtg-conns <group> <channel>   prints total connections for MRTG
  quit                           leaves the shell
  reset <channel>                resets the counters of a channel
  rr                             sets the current group to round robin distribution
  show                           shows every channel with its state and counters
  version                        prints the version and the compiled-in limits
  lc                             sets the current group to least connections
  weight <channel> <weight>      sets the weight of a channel (1..1000000)
"""


def version_text():
    return f"  This is balance {h.project_version()}\n  MAXGROUPS=32\n  MAXCHANNELS=64\n"


def row(grp, typ, ch, state, addr, port, c=0, totalc=0, maxc=0, sent=0, rcvd=0, width=16):
    """One `show` row, formatted independently of the program (classic widths)."""
    return (f"{grp:>3} {typ:>4} {ch:>2} {state:>3} {addr:>{width}} {port:>5} {c:>4} {totalc:>11} "
            f"{maxc:>4} {sent:>11} {rcvd:>11}")


def show_text(*rows, width=16):
    header = HEADER if width == 16 else HEADER.replace("      ip-address", f"{'ip-address':>{width}}")
    return "\n".join([header, *rows]) + "\n"


class Instance:
    """A running balance with three named backends: group 0 RR [b1, b2 maxc 10], group 1 hash
    [b3], group 2 RR [itself]; controlled with or without -M."""

    def __init__(self, start_balance, backends, mmap):
        self.b1 = backends(h.NameServer("b1"))
        self.b2 = backends(h.NameServer("b2"))
        self.b3 = backends(h.NameServer("b3"))
        self.port = h.free_port()
        self.flags = ["-M"] if mmap else []
        channels = [h.channel(self.b1.port), h.channel(self.b2.port, maxc=10), "!",
                    h.channel(self.b3.port), "%", h.channel(self.port)]
        self.balance = start_balance(self.port, channels, opts=self.flags)

    def ctl(self, cmd):
        return h.ctl(self.port, cmd, rundir=self.balance.rundir, extra_args=self.flags)

    def shell(self, text):
        return h.run([*self.flags, "-i", str(self.port)], rundir=self.balance.rundir,
                     stdin_data=text.encode())

    def fresh_show(self):
        return show_text(row(0, "RR", 0, "ENA", "127.0.0.1", self.b1.port),
                         row(0, "RR", 1, "ENA", "127.0.0.1", self.b2.port, maxc=10),
                         row(1, "Hash", 0, "ENA", "127.0.0.1", self.b3.port),
                         row(2, "RR", 0, "ENA", "127.0.0.1", self.port))

    def banner(self):
        return (f"balance {h.project_version()} interactive command shell\n"
                f"PID of master process is {self.balance.pid}\n")


@pytest.fixture(params=[False, True], ids=["shm", "mmap"])
def inst(request, start_balance, backends):
    return Instance(start_balance, backends, request.param)


def ok(result, out):
    """The command succeeded (exit 0, nothing on stderr) and printed exactly `out`."""
    assert (result.rc, result.stderr) == (0, ""), result
    assert result.stdout == out


def test_show_of_a_fresh_instance(inst):
    """`show` prints the classic header and one exact row per channel, groups in order."""
    ok(inst.ctl("show"), inst.fresh_show())


def test_show_counts_a_connection(inst):
    """A served connection shows in totalc and rcvd of the channel that took it; c returns to 0."""
    assert h.ask_name(inst.port) == "b1"
    expected = show_text(row(0, "RR", 0, "ENA", "127.0.0.1", inst.b1.port, totalc=1, rcvd=3),
                         row(0, "RR", 1, "ENA", "127.0.0.1", inst.b2.port, maxc=10),
                         row(1, "Hash", 0, "ENA", "127.0.0.1", inst.b3.port),
                         row(2, "RR", 0, "ENA", "127.0.0.1", inst.port))
    h.wait_for(lambda: inst.ctl("show").stdout == expected, 10, "show to count the connection")
    ok(inst.ctl("mrtg-bytes 0 0"), "3\n0\nUNKNOWN\ngroup 0 channel 0\n")
    ok(inst.ctl("mrtg-conns 0 0"), "1\nUNKNOWN\nUNKNOWN\ngroup 0 channel 0\n")


def golden_commands(inst):
    """(command, exact stdout) in order; each runs in its own `-c` process."""
    b2 = inst.b2.port
    return [
        ("", ""), ("   ", ""),
        ("version", version_text()), ("v", version_text()),
        ("help", HELP), ("?", HELP), ("h", HELP), ("he", HELP),
        ("disable 1", "channel 1 disabled\n"), ("d 1", "channel 1 already disabled\n"),
        ("enable 1", "channel 1 enabled\n"), ("e 1", "channel 1 already enabled\n"),
        ("disable 9", "no such channel 9\n"), ("enable 9", "no such channel 9\n"),
        ("reset 9", "no such channel 9\n"),
        ("reset 0", "channel 0 counters reset\n"), ("r 0", "channel 0 counters reset\n"),
        ("maxc 1 5", "maxc of channel 1 changed to 5\n"), ("m 1 10", "maxc of channel 1 changed to 10\n"),
        ("maxc 9 1", "unknown channel\n"), ("maxc 1 99999999999999", "value out of range\n"),
        ("maxc 1 many", "syntax error\n"),
        ("hash", "group 0 set to hash\n"), ("rr", "group 0 set to round robin\n"),
        ("ha", "group 0 set to hash\n"), ("rr", "group 0 set to round robin\n"),
        ("lc", "group 0 set to least connections\n"), ("l", "group 0 set to least connections\n"),
        ("rr", "group 0 set to round robin\n"),
        ("weight 1 1", "weight of channel 1 changed to 1\n"), ("weight 1 0", "value out of range\n"),
        ("w 9 1", "unknown channel\n"),
        ("group 1", ""), ("g 31", ""), ("group 32", "value out of range\n"), ("group x", "syntax error\n"),
        ("mrtg-bytes 0 0", "0\n0\nUNKNOWN\ngroup 0 channel 0\n"),
        ("mr 0 1", "0\n0\nUNKNOWN\ngroup 0 channel 1\n"),
        ("mrtg-conns 1 0", "0\nUNKNOWN\nUNKNOWN\ngroup 1 channel 0\n"),
        ("mrtg-c 2 0", "0\nUNKNOWN\nUNKNOWN\ngroup 2 channel 0\n"),
        ("mrtg-bytes 32 0", "unknown group\n"), ("mrtg-bytes 0 2", "unknown channel\n"),
        ("mrtg-conns 3 0", "unknown channel\n"),
        ("assign 0 127.0.0.1 80", "channel must be disabled to assign new address\n"),
        ("create no.such.host.invalid 80", "invalid address\n"),
        ("create 127.0.0.1 notaport", "invalid port\n"),
        ("create 127.0.0.1 smtp", "channel created\n"),
        ("assign 2 no.such.host.invalid 80", "invalid address\n"),
        ("assign 2 127.0.0.1 {}".format(b2), "channel reassigned\n"),
        ("a 9 127.0.0.1 80", "unknown channel\n"),
        ("bogus", "syntax error\n"), ("exit", "syntax error\n"), ("SHOW", "syntax error\n"),
        ("disable", "syntax error\n"), ("maxc 1", "syntax error\n"), ("create 127.0.0.1", "syntax error\n"),
        ("assign 0 127.0.0.1", "syntax error\n"), ("mrtg-bytes 0", "syntax error\n"), ("group", "syntax error\n"),
        ("disable -1", "no such channel -1\n"),
        ("disable 99999999999999999999999", "no such channel 99999999999999999999999\n"),
        ("x" * 2000, "line too long\n"),
        ("quit", ""), ("q", ""),
    ]


def test_every_command_through_dash_c(inst):
    """Each command, message and abbreviation prints exactly its classic text and exits 0."""
    for cmd, out in golden_commands(inst):
        result = inst.ctl(cmd)
        assert (result.rc, result.stderr, result.stdout) == (0, "", out), cmd[:40]
    # The create/assign above appended a disabled channel at b2's address.
    ok(inst.ctl("sh"), show_text(row(0, "RR", 0, "ENA", "127.0.0.1", inst.b1.port),
                                 row(0, "RR", 1, "ENA", "127.0.0.1", inst.b2.port, maxc=10),
                                 row(0, "RR", 2, "dis", "127.0.0.1", inst.b2.port),
                                 row(1, "Hash", 0, "ENA", "127.0.0.1", inst.b3.port),
                                 row(2, "RR", 0, "ENA", "127.0.0.1", inst.port)))


def test_numbers_of_channels_and_groups_that_do_not_exist(inst):
    """A channel or group number that names none, negative or too large, gets the command's
    "does not exist" message (COMPAT.md: `no such channel N`, `unknown channel`, `unknown
    group`), as 3.57 printed for them; only a value (maxc) or `group` itself is out of range."""
    for cmd, out in [
        ("disable -1", "no such channel -1\n"), ("enable -2", "no such channel -2\n"),
        ("reset -1", "no such channel -1\n"), ("enable 4294967296", "no such channel 4294967296\n"),
        ("maxc -1 3", "unknown channel\n"), ("maxc 4294967296 3", "unknown channel\n"),
        ("maxc 9 -1", "unknown channel\n"), ("maxc 1 -1", "value out of range\n"),
        ("assign -1 127.0.0.1 80", "unknown channel\n"),
        ("mrtg-bytes -1 0", "unknown group\n"), ("mrtg-conns 99999999999 0", "unknown group\n"),
        ("mrtg-bytes 0 -1", "unknown channel\n"), ("mrtg-conns 0 99999999999", "unknown channel\n"),
        ("group -1", "value out of range\n"), ("group 99999999999", "value out of range\n"),
    ]:
        result = inst.ctl(cmd)
        assert (result.rc, result.stderr, result.stdout) == (0, "", out), cmd
    ok(inst.ctl("show"), inst.fresh_show())  # nothing changed


def test_piped_shell_transcript(inst):
    """A piped -i session: banner, PID line, prompts without newline, group-relative commands,
    and a newline at end of input."""
    commands = ["show", "group 1", "hash", "rr", "", "disable 0", "disable 0", "bogus", "create 127.0.0.1 25",
                "show", "group 0", "maxc 1 4", "mrtg-conns 1 0"]
    result = inst.shell("\n".join(commands) + "\n")
    after = show_text(row(0, "RR", 0, "ENA", "127.0.0.1", inst.b1.port),
                      row(0, "RR", 1, "ENA", "127.0.0.1", inst.b2.port, maxc=10),
                      row(1, "RR", 0, "dis", "127.0.0.1", inst.b3.port),
                      row(1, "RR", 1, "dis", "127.0.0.1", 25),
                      row(2, "RR", 0, "ENA", "127.0.0.1", inst.port))
    ok(result, inst.banner()
       + "balance[0] " + inst.fresh_show()
       + "balance[0] "
       + "balance[1] group 1 set to hash\n"
       + "balance[1] group 1 set to round robin\n"
       + "balance[1] "
       + "balance[1] channel 0 disabled\n"
       + "balance[1] channel 0 already disabled\n"
       + "balance[1] syntax error\n"
       + "balance[1] channel created\n"
       + "balance[1] " + after
       + "balance[1] "
       + "balance[0] maxc of channel 1 changed to 4\n"
       + "balance[0] 0\nUNKNOWN\nUNKNOWN\ngroup 1 channel 0\n"
       + "balance[0] \n")


def test_shell_quit_and_end_of_input(inst):
    """`quit` leaves at once (no newline); end of input prints a newline; both exit 0."""
    ok(inst.shell("version\nquit\nshow\n"), inst.banner() + "balance[0] " + version_text() + "balance[0] ")
    ok(inst.shell(""), inst.banner() + "balance[0] \n")
    ok(inst.shell("help"), inst.banner() + "balance[0] " + HELP + "balance[0] \n")


def test_a_non_blocking_stdout_that_is_full_is_waited_for(start_balance, backends, rundir):
    """Standard output on a pipe whose open file another program left O_NONBLOCK: a full pipe
    is waited on, as a blocking write would, not taken for an output error (exit 74)."""
    srv = backends(h.NameServer("x"))
    port = h.free_port()
    b = start_balance(port, [h.channel(srv.port)])
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    commands = "help\n" * 200  # far more output than a pipe holds
    with tempfile.TemporaryFile() as stdin:
        stdin.write(commands.encode())
        stdin.seek(0)
        proc = subprocess.Popen([h.BALANCE_BIN, "-i", str(port)], stdin=stdin, stdout=write_end,
                                stderr=subprocess.DEVNULL, env=h._env(rundir, None))
    os.close(write_end)

    def waiting():  # blocked in the kernel (on the full pipe), not running, not gone
        try:
            with open(f"/proc/{proc.pid}/syscall") as f:
                return f.read().split()[0] != "running"
        except (OSError, IndexError):
            return False

    try:
        # Nothing is read until the shell has filled the pipe and waits, or has given up.
        h.wait_for(lambda: proc.poll() is not None or waiting(), 30, "the shell to fill its stdout")
        out = b""
        while chunk := os.read(read_end, 65536):
            out += chunk
        assert proc.wait(timeout=h.scaled(30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(read_end)
    assert out.decode().count("balance[0] ") == 201
    assert b.alive()


def test_kill_through_dash_c(inst):
    """`kill` stops the master, removes the segment and says so; then there is no master."""
    ok(inst.ctl("kill"), "shutdown complete, exiting.\n")
    assert inst.balance.wait_exit(10) == 0
    result = inst.ctl("show")
    assert (result.rc, result.stdout, result.stderr) == (69, "", "no master process, exiting.\n")
    assert not [n for n in os.listdir(inst.balance.rundir) if n.startswith("balance.")]


def test_kill_through_the_shell(inst):
    """`kill` in the shell ends the session after its message; later input is not read."""
    result = inst.shell("k\nshow\n")
    ok(result, inst.banner() + "balance[0] shutdown complete, exiting.\n")
    assert inst.balance.wait_exit(10) == 0


def test_no_master(binary, rundir):
    """-c and -i with no instance on the port: the classic message, exit 69."""
    port = h.free_port()
    for args in (["-c", "show", str(port)], ["-i", str(port)], ["-M", "-c", "show", str(port)]):
        result = h.run(args, rundir=rundir)
        assert (result.rc, result.stdout, result.stderr) == (69, "", "no master process, exiting.\n"), args


def test_changes_take_effect_on_the_next_connection(inst):
    """disable/enable/maxc/create/assign change where the very next client goes."""
    assert h.ask_name(inst.port) == "b1"
    ok(inst.ctl("disable 0"), "channel 0 disabled\n")
    assert [h.ask_name(inst.port) for _ in range(3)] == ["b2"] * 3
    ok(inst.ctl("disable 1"), "channel 1 disabled\n")
    assert h.ask_name(inst.port) == "b3"  # group 0 is all disabled: group 1
    ok(inst.ctl("enable 1"), "channel 1 enabled\n")
    ok(inst.ctl("maxc 1 1"), "maxc of channel 1 changed to 1\n")
    with h.connect(inst.port) as held:
        assert h.recv_until(held).decode() == "b2\n"
        assert h.ask_name(inst.port) == "b3"  # b2 is at its maxc
    ok(inst.ctl("create 127.0.0.1 {}".format(inst.b3.port)), "channel created\n")
    ok(inst.ctl("assign 1 127.0.0.1 {}".format(inst.b1.port)), "channel must be disabled to assign new address\n")
    ok(inst.ctl("disable 1"), "channel 1 disabled\n")
    ok(inst.ctl("assign 2 127.0.0.1 {}".format(inst.b1.port)), "channel reassigned\n")
    ok(inst.ctl("enable 2"), "channel 2 enabled\n")
    assert h.ask_name(inst.port) == "b1"  # the new channel, at its new address


def test_bind_address_names_the_instance(start_balance, backends, rundir):
    """Instances are told apart by port and -b text: two coexist, each controlled by its own."""
    srv = backends(h.NameServer("x"))
    p1, p2 = h.free_port(), h.free_port()
    start_balance(p1, [h.channel(srv.port)])
    start_balance(p2, [h.channel(srv.port), h.channel(srv.port)], opts=["-b", "127.0.0.1"],
                  listen_address="127.0.0.1")
    assert len(h.parse_show(h.ctl(p1, "show", rundir=rundir).stdout)) == 1
    assert len(h.parse_show(h.ctl(p2, "show", rundir=rundir, extra_args=["-b", "127.0.0.1"]).stdout)) == 2
    result = h.ctl(p2, "show", rundir=rundir)
    assert (result.rc, result.stderr) == (69, "no master process, exiting.\n")


@pytest.mark.skipif(not h.have_ipv6(), reason="no IPv6 on loopback")
def test_show_widens_for_long_ipv6_addresses(start_balance, backends, rundir):
    """A long IPv6 backend address is shown in full; every other column stays aligned."""
    srv = backends(h.NameServer("x"))
    port = h.free_port()
    long_v6 = "2001:db8:85a3::8a2e:370:7334"
    start_balance(port, [h.channel(srv.port), h.channel(80, "::1"), h.channel(443, long_v6)],
                  opts=["-b", "::1"], listen_address="::1")
    result = h.ctl(port, "show", rundir=rundir, extra_args=["-b", "::1"])
    w = len(long_v6)
    ok(result, show_text(row(0, "RR", 0, "ENA", "127.0.0.1", srv.port, width=w),
                         row(0, "RR", 1, "ENA", "::1", 80, width=w),
                         row(0, "RR", 2, "ENA", long_v6, 443, width=w), width=w))
    lengths = {len(line) for line in result.stdout.splitlines()}
    assert len(lengths) == 1, result.stdout


def test_show_adds_a_weight_column_while_some_weight_is_not_1(inst):
    """`weight` changes a channel's weight; show then has a weight column, and loses it again."""
    ok(inst.ctl("weight 1 3"), "weight of channel 1 changed to 3\n")
    lines = inst.ctl("show").stdout.splitlines()
    assert lines[0] == HEADER + " weight"
    assert [line[-7:] for line in lines[1:]] == ["      1", "      3", "      1", "      1"]
    ok(inst.ctl("weight 1 1"), "weight of channel 1 changed to 1\n")
    ok(inst.ctl("show"), inst.fresh_show())


def test_debug_traces_the_attach(inst):
    """-d with -c traces the segment, its owner and the master on stderr; stdout is unchanged."""
    result = h.run([*inst.flags, "-d", "-c", "version", str(inst.port)], rundir=inst.balance.rundir)
    assert (result.rc, result.stdout) == (0, version_text())
    assert re.search(r"^balance: attach: .*balance\.%d" % inst.port, result.stderr, re.M), result.stderr
    assert "master pid %d" % inst.balance.pid in result.stderr


def test_abbreviations_follow_the_classic_tie_order(inst):
    """Prefixes shared by several commands go to the first of COMPAT.md's tie order (quit, show,
    help, ?, kill, disable, group, reset, enable, create, assign, maxc, mrtg-bytes, mrtg-conns,
    version, hash, rr): `c` is create, `a` assign, `m`/`ma` maxc, `mrtg`/`mrtg-` mrtg-bytes,
    `ha` hash, `s` show, `q`/`qu` quit; a word that is no prefix of a command is a syntax error."""
    for cmd, out in [
        ("s", inst.fresh_show()), ("sho", inst.fresh_show()), ("q", ""), ("qu", ""),
        ("m 1 7", "maxc of channel 1 changed to 7\n"), ("ma 1 10", "maxc of channel 1 changed to 10\n"),
        ("mrtg 0 0", "0\n0\nUNKNOWN\ngroup 0 channel 0\n"), ("mrtg- 1 0", "0\n0\nUNKNOWN\ngroup 1 channel 0\n"),
        ("mrtg-c 1 0", "0\nUNKNOWN\nUNKNOWN\ngroup 1 channel 0\n"),
        ("ha", "group 0 set to hash\n"), ("r", "syntax error\n"), ("rr", "group 0 set to round robin\n"),
        ("a 0 127.0.0.1 80", "channel must be disabled to assign new address\n"),
        ("c", "syntax error\n"), ("c 127.0.0.1 {}".format(inst.b2.port), "channel created\n"),
        ("cr 127.0.0.1 {}".format(inst.b2.port), "channel created\n"),
        ("shows", "syntax error\n"), ("quitx", "syntax error\n"), ("mrtg-x 0 0", "syntax error\n"),
        ("??", "syntax error\n"),
    ]:
        result = inst.ctl(cmd)
        assert (result.rc, result.stderr, result.stdout) == (0, "", out), cmd
    rows = h.parse_show(inst.ctl("show").stdout)
    assert [(r["grp"], r["ch"], r["state"], r["port"]) for r in rows if r["grp"] == 0] == [
        (0, 0, "ENA", inst.b1.port), (0, 1, "ENA", inst.b2.port), (0, 2, "dis", inst.b2.port),
        (0, 3, "dis", inst.b2.port)]


def test_reset_keeps_the_live_connection_count(inst):
    """`reset N` zeroes totalc, sent and rcvd but not c, the connections still open; bytes are
    counted again from there, sent client->server and rcvd server->client."""
    def first_row():
        r = h.parse_show(inst.ctl("show").stdout)[0]
        return (r["c"], r["totalc"], r["sent"], r["rcvd"])
    with h.connect(inst.port) as live:
        assert h.recv_until(live) == b"b1\n"
        live.sendall(b"hello")
        assert h.recv_exact(live, 5) == b"hello"
        h.wait_for(lambda: first_row() == (1, 1, 5, 8), 10, "show to count the open connection")
        ok(inst.ctl("reset 0"), "channel 0 counters reset\n")
        assert first_row() == (1, 0, 0, 0)
        live.sendall(b"abc")
        assert h.recv_exact(live, 3) == b"abc"
        h.wait_for(lambda: first_row() == (1, 0, 3, 3), 10, "show to count the bytes after the reset")
    h.wait_for(lambda: first_row() == (0, 0, 3, 3), 10, "c to drop when the connection ends")
