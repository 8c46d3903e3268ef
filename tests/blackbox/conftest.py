"""pytest fixtures for the black-box tests (see harness.py for the building blocks).

Fixtures:
  rundir        a per-test BALANCE_RUNDIR (a fresh temp dir)
  start_balance factory: start_balance(port, channels, opts=(), **kw) -> harness.Balance,
                started in that rundir and closed (SIGTERM, crash and sanitizer checks) at teardown
  backends      factory registry: backends(harness.EchoServer()) registers a server (or anything
                with close()) to be closed at teardown and returns it
  binary        skips the test if the binary is missing
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


@pytest.fixture
def binary():
    """The path of the balance binary; skips if it has not been built."""
    return harness.built_binary("BALANCE_BIN", "balance", " (set BALANCE_BIN)")


@pytest.fixture
def rundir(tmp_path):
    """A private BALANCE_RUNDIR for this test."""
    d = tmp_path / "run"
    d.mkdir()
    return str(d)


@pytest.fixture
def backends():
    """Registers servers (anything with close()) to be closed at teardown: backends(server) -> server."""
    items = []

    def register(item):
        items.append(item)
        return item

    yield register
    for item in reversed(items):
        try:
            item.close()
        except Exception:  # teardown of helpers must not hide the test's own result
            pass


@pytest.fixture
def start_balance(binary, rundir):
    """Factory starting balance in the foreground in this test's rundir; every instance is
    stopped at teardown, failing the test if it crashed, ignored SIGTERM, or a sanitizer
    reported an error."""
    started = []

    def start(port, channels=(), opts=(), **kw):
        kw.setdefault("rundir", rundir)
        b = harness.Balance(port, channels, opts, **kw)
        started.append(b)
        return b

    yield start
    errors = []
    for b in started:
        try:
            b.close()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)
