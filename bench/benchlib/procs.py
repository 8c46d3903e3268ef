"""Every process the benchmark starts, and what it reads about them from /proc.

Each process is started in its own session, so that the whole tree it forks (nginx workers, ...)
can be signalled as one group and measured as one: its CPU time and its PSS are the sums over the
processes of that session.
"""
import os
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Registry:
    """Owns the started processes; stop_all() ends every one still alive (idempotent)."""

    def __init__(self):
        self._procs = []  # [(name, Popen)]

    def start(self, name, argv, log_path, cwd=None):
        """Starts argv in a new session with stdout+stderr appended to log_path."""
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        self._procs.append((name, proc))
        return proc

    def run(self, name, argv, timeout, log_path=None, cwd=None):
        """Runs a client to completion (killed after timeout s); returns (rc, output text)."""
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        self._procs.append((name, proc))
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            self.stop(proc)
            out, rc = proc.communicate()[0], "timeout"
        finally:
            self._forget(proc)
        text = out.decode("utf-8", "replace")
        if log_path:
            with open(log_path, "a") as log:
                log.write(f"$ {' '.join(argv)}\n{text}\n")
        return rc, text

    def stop(self, proc, grace=3.0):
        """SIGTERM to the process group, SIGKILL after grace seconds; reaps the leader."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not session_pids(proc.pid):
                break
        self._forget(proc)

    def stop_all(self):
        for _, proc in reversed(list(self._procs)):
            self.stop(proc)

    def _forget(self, proc):
        self._procs = [(n, p) for n, p in self._procs if p is not proc]


def _stat_fields(pid):
    """The fields of /proc/pid/stat after the command name (index 0 is field 3, the state)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rfind(")") + 2:].split()


def session_pids(sid):
    """The live (non-zombie) processes whose session id is sid."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def session_cpu_seconds(sid):
    """utime+stime (all threads) summed over the session's processes, in seconds."""
    ticks = 0
    for pid in session_pids(sid):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def tcp_segments_sent():
    """The machine's TCP segments sent so far (OutSegs of /proc/net/snmp): on loopback, every
    segment of both sides of every connection."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("OutSegs")])


def _machine_ticks():
    """(busy, steal, all) CPU ticks of the whole machine so far, over all CPUs, from /proc/stat:
    busy is user, nice, system, irq and softirq (guest time is inside user; idle, iowait and
    steal are not busy); steal is the time the hypervisor ran something else on our CPUs."""
    with open("/proc/stat") as f:
        ticks = list(map(int, f.readline().split()[1:9]))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return user + nice + system + irq + softirq, steal, sum(ticks)


def machine_busy_seconds():
    """CPU time the whole machine has spent busy so far, over all CPUs (see _machine_ticks)."""
    return _machine_ticks()[0] / CLK_TCK


def tcp_syns_retransmitted():
    """SYNs the machine has retransmitted so far (TCPSynRetrans of /proc/net/netstat): each one
    is a connection that waited a second or more for its handshake."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(lines[1][lines[0].index("TCPSynRetrans")])


class Disturbance:
    """What, besides the contender, may have slowed a run: the share of the machine's CPU time
    the hypervisor took (steal) and the SYNs retransmitted while it ran."""

    def __init__(self):
        _, self._steal, self._all = _machine_ticks()
        self._syns = tcp_syns_retransmitted()

    def result(self):
        _, steal, total = _machine_ticks()
        return {"steal_pct": 100.0 * (steal - self._steal) / max(1, total - self._all),
                "syn_retrans": tcp_syns_retransmitted() - self._syns}


def session_pss_kib(sid):
    """Proportional set size summed over the session's processes, in KiB."""
    total = 0
    for pid in session_pids(sid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def listening(port):
    """True when something listens on 127.0.0.1:port (or any address) over TCP."""
    want = f":{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and cols[1].endswith(want):
                        return True
        except OSError:
            continue
    return False


def busy_sockets(ports):
    """How many loopback TCP sockets touching ports are neither listening nor in TIME_WAIT."""
    wanted = {f"{p:04X}" for p in ports}
    count = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] in ("0A", "06", "07"):
                        continue
                    if cols[1][-4:] in wanted or cols[2][-4:] in wanted:
                        count += 1
        except OSError:
            continue
    return count


def wait_until(predicate, timeout, step=0.05):
    """Polls predicate until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)
