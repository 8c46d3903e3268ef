"""The -i shell on a terminal (a pseudo-terminal here): GNU readline with tab completion of
command names, history, and a clean exit on end of input (Ctrl-D)."""

import os
import re
import select
import signal
import subprocess
import termios
import time

import harness as h

HEADER = "GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd"


class Terminal:
    """balance -i PORT with a pseudo-terminal as stdin, stdout and stderr."""

    def __init__(self, port, rundir):
        master, slave = os.openpty()
        env = dict(os.environ, BALANCE_RUNDIR=rundir, TERM="xterm", INPUTRC="/dev/null")
        self.proc = subprocess.Popen([h.BALANCE_BIN, "-i", str(port)], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.fd = master
        self.seen = ""

    def type(self, keys):
        os.write(self.fd, keys.encode())

    def wait_for(self, text, count=1, timeout=10):
        """Reads the screen until `text` has appeared `count` times in all; returns the screen."""
        deadline = time.monotonic() + h.scaled(timeout)
        while self.seen.count(text) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} (x{count}) on the terminal; saw {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:  # EIO: the program closed the terminal
                    assert self.seen.count(text) >= count, self.seen[-2000:]
        return self.seen

    def rest(self, timeout=10):
        """Reads the screen until the program closes the terminal; returns the screen."""
        deadline = time.monotonic() + h.scaled(timeout)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: the program closed the terminal
                    return self.seen
                if not data:
                    return self.seen
                self.seen += data.decode(errors="replace")
        raise AssertionError(f"the terminal stayed open; saw {self.seen[-2000:]!r}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.fd)


def test_readline_completion_history_and_eof(start_balance, backends, rundir):
    """Tab completes a command name, the up arrow recalls it, Ctrl-D leaves with exit 0."""
    srv = backends(h.NameServer("x"))
    port = h.free_port()
    b = start_balance(port, [h.channel(srv.port)])
    term = Terminal(port, rundir)
    try:
        term.wait_for(f"PID of master process is {b.pid}")
        term.wait_for("balance[0] ")
        term.type("sh\t\r")  # completes to "show "
        term.wait_for(HEADER)
        term.wait_for("balance[0] ", count=2)
        term.type("\x1b[A\r")  # history: the previous line again
        term.wait_for(HEADER, count=2)
        term.wait_for("balance[0] ", count=3)
        term.type("mrtg-\t\t")  # two choices: listed on the second tab
        screen = term.wait_for("mrtg-conns")
        assert "mrtg-bytes" in screen
        term.type("\x15group 3\r")  # Ctrl-U clears the line first
        term.wait_for("balance[3] ")
        term.type("\x04")  # Ctrl-D on an empty line: end of input
        assert term.proc.wait(timeout=h.scaled(10)) == 0
        # One line break after the prompt (readline's or the shell's), not an empty line.
        after = term.rest().rsplit("balance[3] ", 1)[1]
        assert re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", after) == "\n", repr(after)
    finally:
        term.close()
    assert b.alive()


def test_a_stray_signal_neither_ends_the_shell_nor_leaves_the_terminal_raw(start_balance, backends, rundir):
    """SIGUSR2 (the upgrade signal: `pkill -USR2 balance` reaches the open shells too) and the
    other signals that mean nothing to balance are ignored by the shell as by the master: it
    goes on, rather than die with the terminal left raw (no echo) by readline."""
    srv = backends(h.NameServer("x"))
    port = h.free_port()
    b = start_balance(port, [h.channel(srv.port)])
    fresh_master, fresh_slave = os.openpty()
    cooked = termios.tcgetattr(fresh_slave)  # a new terminal's settings, as the shell's was
    os.close(fresh_master)
    os.close(fresh_slave)
    term = Terminal(port, rundir)
    try:
        term.wait_for("balance[0] ")
        assert termios.tcgetattr(term.fd) != cooked  # readline has the terminal raw
        for count, sig in enumerate((signal.SIGUSR2, signal.SIGUSR1), start=1):
            term.proc.send_signal(sig)
            term.type("show\r")
            term.wait_for(HEADER, count=count)
            term.wait_for("balance[0] ", count=count + 1)
        term.type("\x04")
        assert term.proc.wait(timeout=h.scaled(10)) == 0
        assert termios.tcgetattr(term.fd) == cooked
    finally:
        term.close()
    assert b.alive()
