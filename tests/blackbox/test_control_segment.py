"""The control segment as a user meets it: a stale segment left by a killed master, corrupted or
resized segments, and another user's attempt to attach, with POSIX shm and with -M."""

import os
import pwd
import random
import shutil
import signal
import struct
import subprocess
import tempfile

import pytest

import harness as h

# Layout version 1 of core::Table (src/core/table.h): a 128-byte header, then 32 groups of
# 8256 bytes (type, nchannels, cursor, then 64 channels of 128 bytes); the master pid at 40.
TABLE_SIZE = 128 + 32 * 8256
GROUP_OFFSET, GROUP_SIZE = 128, 8256
MASTER_PID_OFFSET = 40

NO_MASTER = "no master process, exiting.\n"


class Instance:
    """balance on a free port with two named backends in group 0 and one in group 1."""

    def __init__(self, start_balance, backends, rundir, mmap):
        self.servers = [backends(h.NameServer(n)) for n in ("b1", "b2", "b3")]
        self.port = h.free_port()
        self.rundir = rundir
        self.flags = ["-M"] if mmap else []
        self.channels = [h.channel(self.servers[0].port), h.channel(self.servers[1].port), "!",
                         h.channel(self.servers[2].port)]
        self.start_balance = start_balance
        self.balance = self.start()
        self.path = h.segment_path(self.port, rundir, mmap)
        # Listening comes before the table: the tests below write into it only once a client can
        # attach, which is once the master has filled it.
        h.wait_for(lambda: self.ctl("show").rc == 0, 10, "the master's table")

    def start(self):
        return self.start_balance(self.port, self.channels, opts=self.flags)

    def ctl(self, cmd):
        return h.ctl(self.port, cmd, rundir=self.rundir, extra_args=self.flags)

    def master_pid_in_header(self):
        with open(self.path, "rb") as f:
            return struct.unpack_from("<i", f.read(128), MASTER_PID_OFFSET)[0]

    def poke(self, offset, data):
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)


@pytest.fixture(params=[False, True], ids=["shm", "mmap"])
def inst(request, start_balance, backends, rundir):
    return Instance(start_balance, backends, rundir, request.param)


def test_segment_is_private(inst):
    """The segment is a regular file of the master's user, mode 0600, of the table's size."""
    st = os.stat(inst.path)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_size) == (0o600, os.geteuid(), TABLE_SIZE)


def test_stale_segment_after_sigkill_is_reported_and_replaced(inst):
    """A master killed with SIGKILL leaves its segment: clients say there is no master (69),
    and the next master on the port replaces the segment cleanly."""
    assert inst.master_pid_in_header() == inst.balance.pid
    inst.balance.proc.kill()
    inst.balance.proc.wait(timeout=h.scaled(10))
    assert os.path.exists(inst.path)
    result = inst.ctl("show")
    assert (result.rc, result.stdout, result.stderr) == (69, "", NO_MASTER)
    result = h.run([*inst.flags, "-i", str(inst.port)], rundir=inst.rundir)
    assert (result.rc, result.stdout, result.stderr) == (69, "", NO_MASTER)
    inst.balance = inst.start()
    assert inst.master_pid_in_header() == inst.balance.pid
    result = inst.ctl("show")
    assert result.rc == 0 and len(h.parse_show(result.stdout)) == 3, result
    assert h.ask_name(inst.port) == "b1"


def test_corrupted_header_is_a_clear_error_and_harms_nobody(inst):
    """Garbage over the magic: the client refuses with one clear line (exit 65); the master
    keeps serving; with the magic back, control works again."""
    inst.poke(0, b"GARBAGE!")
    result = inst.ctl("show")
    assert (result.rc, result.stdout) == (65, "")
    assert result.stderr == (f"invalid control segment of balance on port {inst.port}: bad magic, exiting.\n")
    assert h.ask_name(inst.port) == "b1"
    inst.poke(8, struct.pack("<I", 7))  # layout version
    inst.poke(0, b"BALANCE\0")
    result = inst.ctl("show")
    assert result.rc == 65 and "layout version 7, expected 1" in result.stderr, result
    inst.poke(8, struct.pack("<I", 1))
    assert inst.ctl("show").rc == 0


@pytest.mark.parametrize("closed", ["<&-", ">&-", "2>&-", "<&- >&- 2>&-"])
def test_closed_standard_descriptors_leave_the_segment_alone(inst, closed):
    """A control command run with stdin, stdout or stderr closed: the segment it opens must not
    take that descriptor's place (its output used to be written into the live table, which then
    had a bad magic)."""
    flags = " ".join(inst.flags)
    script = f'exec "$0" {flags} -c "disable 1" {inst.port} {closed}; '
    subprocess.run(["sh", "-c", script, h.BALANCE_BIN], env=dict(os.environ, BALANCE_RUNDIR=inst.rundir),
                   timeout=h.scaled(20), check=True)
    script = f'exec "$0" {flags} -i {inst.port} {closed}'
    subprocess.run(["sh", "-c", script, h.BALANCE_BIN], env=dict(os.environ, BALANCE_RUNDIR=inst.rundir),
                   timeout=h.scaled(20), check=True)
    result = inst.ctl("show")
    assert result.rc == 0, result
    assert [r["state"] for r in h.parse_show(result.stdout)] == ["ENA", "dis", "ENA"]
    assert h.ask_name(inst.port) == "b1"


def test_wrong_size_is_a_clear_error(inst):
    """A segment of the wrong size is refused (exit 65) before it is mapped."""
    os.truncate(inst.path, TABLE_SIZE + 4096)
    result = inst.ctl("show")
    assert result.rc == 65 and f"size {TABLE_SIZE + 4096}, expected {TABLE_SIZE}" in result.stderr, result
    assert h.ask_name(inst.port) == "b1"


def ask_or_closed(port):
    """The backend's name, or None when balance closed the connection at once."""
    try:
        return h.ask_name(port)
    except AssertionError:
        return None


@pytest.mark.parametrize("size", [0, 4096])
def test_truncated_segment_crashes_nobody(inst, size):
    """Another process truncates the segment while a shell is attached. The shell's next look at
    the table ends it with one line (exit 65). The master goes on serving (it died of SIGBUS):
    when it meets a page that was cut off, it puts the size back and writes the table anew from
    its command line; the client that met the loss may be closed. Workers read the table while
    the master writes it anew: a worker that read group 0 before it was written and group 1 after
    sends its client to group 1's channel (seen once in a CI run of the files side by side)."""
    env = dict(os.environ, BALANCE_RUNDIR=inst.rundir)
    shell = subprocess.Popen([h.BALANCE_BIN, *inst.flags, "-i", str(inst.port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert shell.stdout.read1(4096).startswith(b"balance "), "no banner"  # attached and mapped
        os.truncate(inst.path, size)
        out, err = shell.communicate(b"show\n", timeout=h.scaled(10))
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    assert shell.returncode == 65, (shell.returncode, out, err)
    assert err == (f"control segment of balance on port {inst.port} was truncated by another process, "
                   "exiting.\n").encode()
    assert ask_or_closed(inst.port) in ("b1", "b3", None)
    assert inst.balance.alive()
    if size > 0:  # the channels' page survived: the master has nothing to mend yet, and serves
        assert h.ask_name(inst.port) in ("b1", "b2")
        result = inst.ctl("show")
        assert result.rc == 65 and f"size {size}, expected {TABLE_SIZE}" in result.stderr, result
        return
    h.wait_for(lambda: "the control segment was truncated by another process" in inst.balance.stderr(), 10,
               "the master's log line")
    assert os.stat(inst.path).st_size == TABLE_SIZE
    result = inst.ctl("show")
    assert result.rc == 0 and [r["state"] for r in h.parse_show(result.stdout)] == ["ENA"] * 3, result
    # Round robin over the table written anew. The client above may have been served from it
    # already (the master can write it before that client's worker reads its group), which
    # moved the cursor on: either phase is right.
    names = [h.ask_name(inst.port) for _ in range(4)]
    assert names in (["b1", "b2", "b1", "b2"], ["b2", "b1", "b2", "b1"]), names


def test_counts_out_of_range_crash_neither_client_nor_master(inst):
    """Huge channel counts and unknown group types: every command still answers, the master
    keeps running and still serves or closes clients."""
    for g in range(32):
        base = GROUP_OFFSET + g * GROUP_SIZE
        inst.poke(base, struct.pack("<II", 0xDEADBEEF, 0xFFFFFFFF))
    result = inst.ctl("show")
    assert result.rc == 0 and len(result.stdout.splitlines()) == 1 + 32 * 64, result.stderr
    for cmd in ("disable 63", "enable 63", "maxc 63 1", "reset 63", "mrtg-bytes 31 63", "hash",
                "create 127.0.0.1 80", "assign 63 127.0.0.1 80"):
        result = inst.ctl(cmd)
        assert result.rc == 0 and result.stdout and not result.stderr, (cmd, result)
    with h.connect(inst.port) as c:
        try:  # served by a real backend, or closed: either is fine, a crash is not
            assert h.recv_until(c, b"\n", 20) in (b"b1\n", b"b2\n", b"b3\n")
        except (AssertionError, ConnectionResetError):
            pass
    assert inst.balance.alive()


def test_random_garbage_in_the_table_crashes_nothing(inst):
    """Random bytes over the whole table body: show and the other commands still answer."""
    rng = random.Random(1234)
    inst.poke(GROUP_OFFSET, bytes(rng.getrandbits(8) for _ in range(TABLE_SIZE - GROUP_OFFSET)))
    for cmd in ("show", "disable 0", "enable 1", "maxc 0 3", "mrtg-conns 5 5", "version", "rr"):
        result = inst.ctl(cmd)
        assert result.rc == 0 and not result.stderr, (cmd, result)
    assert inst.balance.alive()


def _nobody_can_run_binary():
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.mark.skipif(not _nobody_can_run_binary(), reason="needs root, setpriv and user nobody")
def test_another_user_is_refused_and_changes_nothing(inst):
    """`setpriv --reuid=nobody ... balance -c CMD PORT`: exit 77, a clear message, no change."""
    before = inst.ctl("show").stdout
    message = f"permission denied: balance on port {inst.port} belongs to another user, exiting.\n"
    setpriv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = dict(os.environ, BALANCE_RUNDIR=inst.rundir)
    for args, stdin in ((["-c", "show"], None), (["-c", "disable 0"], None), (["-c", "kill"], None),
                        (["-i"], b"disable 0\n")):
        proc = subprocess.run(setpriv + [h.BALANCE_BIN, *inst.flags, *args, str(inst.port)], env=env,
                              input=stdin or b"", capture_output=True, timeout=h.scaled(20))
        assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (77, b"", message), args
    assert inst.ctl("show").stdout == before
    assert inst.balance.alive()


@pytest.mark.parametrize("mmap", [False, True], ids=["shm", "mmap"])
def test_a_full_file_system_is_a_clear_start_error(backends, tmp_path, mmap):
    """The segment's file system has less room than the table (a small /dev/shm, a full -M run
    directory): balance does not start, says so in one line (exit 73) and leaves no segment.
    Run in a private mount namespace with a 128 KiB tmpfs there. (ftruncate() does not allocate:
    the first write to the table used to fault, and the master died with exit 65 saying another
    process had truncated its segment, and left the segment behind.)"""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private small file system")
    srv = backends(h.EchoServer())
    port = h.free_port()
    rundir = str(tmp_path / "run")
    os.mkdir(rundir, 0o700)
    where = rundir if mmap else "/dev/shm"
    flags = "-M" if mmap else ""
    script = (f"mount -t tmpfs -o size=128k,mode=0700 tmpfs {where} && "
              f"{h.BALANCE_BIN} -f {flags} {port} {srv.address}; rc=$?; ls -A {where}; exit $rc")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          stdin=subprocess.DEVNULL, capture_output=True, env=h._env(rundir, None),
                          timeout=h.scaled(30))
    if proc.returncode != 73 and b"unshare" in proc.stderr:
        pytest.skip("no private mount namespace here")
    h.assert_no_sanitizer_report(proc.stderr.decode(errors="replace"))
    name = os.path.join(rundir, f"balance.{port}") if mmap else f"/balance.{port}"
    assert (proc.returncode, proc.stderr.decode(), proc.stdout.decode()) == (
        73, f"cannot allocate control segment {name}: No space left on device\n", "")


def test_a_truncated_segment_with_no_room_to_write_it_anew_ends_the_master(backends, tmp_path):
    """Another process truncates a live -M segment, then its file system fills up. The master's
    next look at the table puts the size back, but there is no storage for the pages: it says so
    in one line and exits 73. (It used to retry the faulting access for ever: a master spinning at
    full CPU and serving nobody.) Run in a private mount namespace with a 400 KiB tmpfs as the run
    directory, reached from here through /proc/PID/root."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private small file system")
    srv = backends(h.NameServer("b1"))
    port = h.free_port()
    rundir = str(tmp_path / "run")
    os.mkdir(rundir, 0o700)
    script = f"mount -t tmpfs -o size=400k,mode=0700 tmpfs {rundir} && exec {h.BALANCE_BIN} -f -M {port} {srv.address}"
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=h._env(rundir, None))
    try:
        h.wait_for(lambda: proc.poll() is not None or h.listening_pids(port), 10, "balance listening")
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")
            if "unshare" in err:
                pytest.skip("no private mount namespace here")
            pytest.fail(f"balance exited {proc.returncode}: {err}")
        assert h.ask_name(port) == "b1"  # serving: the master's fault handler is in place
        # Stopped while its segment is cut and its file system filled, so that nothing of the
        # master can look at the table in between, and mend it while there is still room.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            inside = f"/proc/{proc.pid}/root{rundir}"
            os.truncate(f"{inside}/balance.{port}", 0)
            with open(f"{inside}/filler", "wb", buffering=0) as f:  # fills the tmpfs: 400 KiB at most
                with pytest.raises(OSError):
                    for _ in range(100):
                        f.write(b"\0" * 8192)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        try:  # a worker looks at the table for this client, if the master is still there
            with h.connect(port) as sock:
                h.expect_closed(sock)
        except ConnectionRefusedError:
            pass  # it had already met the cut pages, and gone
        proc.wait(timeout=h.scaled(10))
        err = proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    h.assert_no_sanitizer_report(err)
    assert (proc.returncode, err) == (73, f"control segment of balance on port {port} was truncated by another "
                                          "process and there is no room to write it anew, exiting.\n")


def _run_dir_cases(base):
    """(id, BALANCE_RUNDIR, expected one-line message of `balance -f -M`) for run directories
    a master cannot use; `base` is a directory of this user."""
    regular = os.path.join(base, "file")
    open(regular, "w").close()
    os.mkdir(os.path.join(base, "dir"), 0o700)
    os.symlink(os.path.join(base, "dir"), os.path.join(base, "link"))
    os.symlink(os.path.join(base, "none"), os.path.join(base, "dangling"))
    newline = os.path.join(base, "no\nsuch", "run")
    too_long = os.path.join(base, "d" * 300)
    return [
        ("regular-file", regular, f"unsafe run directory {regular}: not a directory"),
        ("symlink-to-dir", os.path.join(base, "link"), f"unsafe run directory {base}/link: a symbolic link"),
        ("dangling-symlink", os.path.join(base, "dangling"), f"unsafe run directory {base}/dangling: a symbolic link"),
        ("newline", newline, f"cannot create run directory {base}/no\\x0Asuch/run: No such file or directory"),
        ("name-too-long", too_long, f"cannot create run directory {base}/{'d' * (199 - len(base))}...: "
                                    "File name too long"),
    ]


@pytest.mark.parametrize("case", range(5), ids=["regular-file", "symlink-to-dir", "dangling-symlink", "newline",
                                                 "name-too-long"])
def test_an_unusable_run_directory_is_named_in_one_line(backends, tmp_path, case):
    """BALANCE_RUNDIR naming something a master cannot use with -M: exit 73 and one line that
    says what is wrong with it, the path shown with its control bytes escaped and cut (a
    newline in it split the message in two, and a regular file or a symbolic link were all
    'not a directory of this user, or writable by others'). `-c show -M` finds no master."""
    srv = backends(h.EchoServer())
    _, rundir, message = _run_dir_cases(str(tmp_path))[case]
    port = h.free_port()
    result = h.run(["-f", "-M", port, srv.address], rundir=rundir)
    assert (result.rc, result.stdout, result.stderr) == (73, "", message + "\n")
    shown = h.run(["-M", "-c", "show", port], rundir=rundir)
    assert shown.rc in (69, 71) and shown.stderr.count("\n") == 1, shown


@pytest.mark.skipif(not _nobody_can_run_binary(), reason="needs root, setpriv and user nobody")
@pytest.mark.parametrize("via", ["BALANCE_RUNDIR", "XDG_RUNTIME_DIR"])
@pytest.mark.parametrize("mode", [0o500, 0o600], ids=["no-write", "no-search"])
def test_a_run_directory_without_permission_is_named(backends, mode, via):
    """A run directory of the user without write or search permission (or an XDG_RUNTIME_DIR
    above it): the master says the run directory cannot be used or made (it said 'cannot replace
    control segment DIR/balance.PORT', a file that was not there), and `-c show` says the
    segment cannot be opened (exit 77; it said the instance belonged to another user)."""
    srv = backends(h.EchoServer())
    base = tempfile.mkdtemp(prefix="balance-bb-nobody-")  # in /tmp: pytest's own is root's only
    try:
        os.chmod(base, 0o755)
        rundir = os.path.join(base, "run")
        os.mkdir(rundir)
        os.chown(rundir, pwd.getpwnam("nobody").pw_uid, -1)
        os.chmod(rundir, mode)
        port = h.free_port()
        setpriv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        env = {k: v for k, v in os.environ.items() if k not in ("BALANCE_RUNDIR", "XDG_RUNTIME_DIR")}
        env[via] = rundir
        start = subprocess.run(setpriv + [h.BALANCE_BIN, "-f", "-M", str(port), srv.address], env=env,
                               capture_output=True, timeout=h.scaled(20))
        made = "use" if via == "BALANCE_RUNDIR" else "create"
        if via == "XDG_RUNTIME_DIR":
            rundir += "/balance"
        assert (start.returncode, start.stderr.decode()) == (73, f"cannot {made} run directory {rundir}: Permission denied\n")
        show = subprocess.run(setpriv + [h.BALANCE_BIN, "-M", "-c", "show", str(port)], env=env,
                              capture_output=True, timeout=h.scaled(20))
        expected = ((69, NO_MASTER) if mode & 0o100 else
                    (77, f"cannot open control segment {rundir}/balance.{port}: Permission denied\n"))
        assert (show.returncode, show.stderr.decode()) == expected
    finally:
        shutil.rmtree(base)
