"""The command line (COMPAT.md, "Command line"): errors, messages and exit codes, -h, --version."""

import pytest

import harness as h

EX_USAGE, EX_DATAERR, EX_UNAVAILABLE = 64, 65, 69


def has_line_ending_with(text, message):
    """True if some line of `text` is `message` (possibly after a program-name prefix)."""
    return any(line.rstrip().endswith(message) for line in text.splitlines())


@pytest.fixture
def usage_text(binary):
    """The usage text as printed by `balance -h`."""
    res = h.run(["-h"])
    assert res.rc == 0
    return res.stdout


@pytest.mark.parametrize("args", [
    [],
    ["-f"],
    ["-f", "-Z", "{port}", "localhost"],
    ["-f", "-t", "0", "{port}", "localhost"],
    ["-f", "-T", "0", "{port}", "localhost"],
    ["-f", "-t"],
], ids=["nothing", "no-port", "unknown-option", "t0", "T0", "missing-option-argument"])
def test_usage_errors(binary, rundir, usage_text, args):
    """Usage errors print the usage text on stderr and exit 64."""
    port = str(h.free_port())
    res = h.run([a.replace("{port}", port) for a in args], rundir=rundir, timeout=10)
    assert res.rc == EX_USAGE, res
    assert usage_text.strip() in res.stderr, res.stderr
    assert res.stdout == ""


def test_invalid_port(binary, rundir):
    """A listening port that is neither a number nor a service: `invalid port [..], exiting.`, 64."""
    res = h.run(["-f", "notaport", "localhost"], rundir=rundir, timeout=10)
    assert res.rc == EX_USAGE, res
    assert has_line_ending_with(res.stderr, "invalid port [notaport], exiting."), res.stderr


def test_unknown_host(binary, rundir):
    """An unresolvable host: `unknown or invalid address [..]`, 65."""
    res = h.run(["-f", str(h.free_port()), "no.such.host.invalid"], rundir=rundir, timeout=30)
    assert res.rc == EX_DATAERR, res
    assert has_line_ending_with(res.stderr, "unknown or invalid address [no.such.host.invalid]"), res.stderr


@pytest.mark.parametrize("channels", [
    ["!", "localhost"],
    ["%", "localhost"],
    ["localhost", "!", "!", "localhost"],
    ["localhost", "%", "!", "localhost"],
], ids=["leading-bang", "leading-percent", "double-bang", "percent-bang"])
def test_separator_without_channel(binary, rundir, channels):
    """A group separator with no channel before it: `no channels in group`, 69."""
    res = h.run(["-f", str(h.free_port())] + channels, rundir=rundir, timeout=10)
    assert res.rc == EX_UNAVAILABLE, res
    assert has_line_ending_with(res.stderr, "no channels in group"), res.stderr


@pytest.mark.parametrize("args", [["-c", "show"], ["-i"]], ids=["-c", "-i"])
def test_control_without_instance(binary, rundir, args):
    """`-c`/`-i` with no instance on that port: `no master process, exiting.`, 69."""
    res = h.run(args + [str(h.free_port())], rundir=rundir, timeout=10)
    assert res.rc == EX_UNAVAILABLE, res
    assert has_line_ending_with(res.stderr, "no master process, exiting."), res.stderr


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(binary, flag):
    """-h and --help print the usage text on stdout and exit 0."""
    res = h.run([flag], timeout=10)
    assert res.rc == 0, res
    assert res.stderr == ""
    assert "balance" in res.stdout and "port" in res.stdout
    for option in ("-b", "-B", "-t", "-T", "-c", "-i"):
        assert option in res.stdout, option


def test_version(binary):
    """--version prints the program's version and exits 0."""
    res = h.run(["--version"], timeout=10)
    assert res.rc == 0, res
    assert res.stderr == ""
    assert "balance" in res.stdout.lower()
    assert h.project_version() in res.stdout


@pytest.mark.parametrize("args", [
    ["-f", "{port}", "localhost:99999"],
    ["-f", "{port}", "localhost:1:x"],
    ["-f", "{port}", "localhost:1:-3"],
    ["-f", "{port}", "localhost:1:2:3:4"],
    ["-f", "{port}", "[::1"],
    ["-f", "{port}", "[::1]x"],
    ["-f", "{port}", "[not-an-address]:80"],
    ["-f", "{port}", ":80"],
    ["-f", "{port}", ""],
    ["-f", "99999", "localhost"],
    ["-f", "-1", "localhost"],
    ["-f", "-t", "x", "{port}", "localhost"],
    ["-f", "-t", "-5", "{port}", "localhost"],
    ["-f", "-T", "99999999999999999999", "{port}", "localhost"],
    ["-f", "-b", "no.such.host.invalid", "{port}", "localhost"],
    ["-f", "-B", "no.such.host.invalid", "{port}", "localhost"],
    ["-f", "--threads", "0", "{port}", "localhost"],
    ["-f", "--threads", "x", "{port}", "localhost"],
    ["-f", "{port}", "localhost\x01"],
    ["-f", "{port}", "a" * 5000],
])
def test_malformed_input_fails_cleanly(binary, rundir, args):
    """Malformed input of any kind gives an error on stderr and a documented exit code: no crash, no hang."""
    port = str(h.free_port())
    res = h.run([a.replace("{port}", port) for a in args], rundir=rundir, timeout=30)
    assert res.rc in (EX_USAGE, EX_DATAERR, EX_UNAVAILABLE), res
    assert res.stderr.strip(), res
    assert len(res.stderr) < 20000
