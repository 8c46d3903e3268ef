"""The status page in a real browser (Debian's chromium, headless, driven over the DevTools
protocol on a pipe): a channel's row shows up, and its numbers change by themselves while
traffic flows. Saves a screenshot each run (to the test's temp dir, and also to
$BALANCE_STATUS_SCREENSHOT when set)."""

import base64
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time

import pytest

import harness as h
from test_metrics import Metrics, exchange, tool

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
    "--hide-scrollbars", "--disable-dev-shm-usage", "--remote-debugging-pipe",
]


class Browser:
    """Headless chromium driven over --remote-debugging-pipe (fd 3: commands in, fd 4: replies
    out, NUL-separated JSON), with one page. Every call is bounded by a deadline."""

    def __init__(self, chromium, profile_dir, log_path, width=1280, height=900):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # bash (dash takes no fd above 9) puts the pipe ends on chromium's fds 3 and 4, as the protocol wants.
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", script, chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
             f"--window-size={width},{height}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            pass_fds=(to_browser_r, from_browser_w), start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self.session = None
        self.width, self.height = width, height
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"}, timeout=60)["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise AssertionError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, timeout=30):
        """Sends one command (to the page once attached) and returns its result."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + h.scaled(timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:  # anything else is an event: not needed here
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def navigate(self, url):
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-serializable)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path):
        """A PNG of the whole page (the viewport grown to the document's height)."""
        height = max(self.height, int(self.evaluate("document.documentElement.scrollHeight")))
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except (AssertionError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=h.scaled(10))
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, 9)
                    self.proc.wait(timeout=10)
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()


ROW_VALUES = """(() => {
  const row = document.querySelector('tr[data-channel="%s"]');
  if (!row) return null;
  const out = {samples: Number(row.dataset.samples)};
  for (const td of row.querySelectorAll("[data-field]")) out[td.dataset.field] = td.dataset.value ?? td.textContent;
  out.text = Object.fromEntries([...row.querySelectorAll("[data-field]")].map(td => [td.dataset.field, td.textContent]));
  return out;
})()"""


@pytest.fixture
def browser(tmp_path):
    chromium = tool("chromium")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    b = Browser(chromium, str(profile), str(tmp_path / "chromium.log"))
    yield b
    b.close()


class Traffic(threading.Thread):
    """Keeps connections going through balance until stopped (bounded in count and time)."""

    def __init__(self, port, max_connections=2000, max_seconds=120):
        super().__init__(daemon=True)
        self.port, self.max_connections, self.max_seconds = port, max_connections, max_seconds
        self.stop_event = threading.Event()
        self.done = 0
        self.error = None

    def run(self):
        deadline = time.monotonic() + h.scaled(self.max_seconds)
        try:
            while not self.stop_event.is_set() and self.done < self.max_connections and time.monotonic() < deadline:
                exchange(self.port, os.urandom(20000))
                self.done += 1
                self.stop_event.wait(0.05)  # a steady trickle rather than a flood
        except (OSError, AssertionError) as e:
            self.error = e

    def stop(self):
        self.stop_event.set()
        self.join(h.scaled(30))
        assert not self.is_alive()


def test_status_page_shows_channels_and_updates_live(start_balance, backends, browser, tmp_path):
    """The page lists every group and channel; while traffic flows through channel 0/0 its
    totals and rates change in place (no reload), matching /metrics; a screenshot is saved."""
    a, b, c = backends(h.EchoServer()), backends(h.EchoServer()), backends(h.EchoServer())
    mport, port = h.free_port(), h.free_port()
    bal = start_balance(port, [a.address + ":8", "%", b.address, c.address],
                        ["--metrics", f"127.0.0.1:{mport}"])
    m = Metrics(bal, mport)
    exchange(bal.port, b"before the page")

    browser.navigate(f"http://127.0.0.1:{mport}/")
    first = h.wait_for(lambda: browser.evaluate(ROW_VALUES % "0/0"), 30, "the row of channel 0/0")
    assert first["backend"] == a.address
    assert first["connections_total"] == "1" and first["sent_bytes_total"] == "15"
    assert first["text"]["index"] == "0/0"
    assert "enabled" in first["text"]["state"]
    assert browser.evaluate("[...document.querySelectorAll('tr[data-channel]')].map(r => r.dataset.channel)") == \
        ["0/0", "1/0", "1/1"]
    browser.evaluate("window.__sameDocument = true")

    traffic = Traffic(bal.port)
    traffic.start()
    try:
        moving = h.wait_for(lambda: (lambda v: v if v and float(v["conn_rate"] or 0) > 0
                                     and int(v["connections_total"]) > 1 else None)(browser.evaluate(ROW_VALUES % "0/0")),
                            30, "channel 0/0 to show a connection rate while traffic flows")
        assert int(moving["sent_bytes_total"]) > 15
        assert moving["text"]["conn_rate"].endswith("/s") and moving["text"]["sent_rate"].endswith("/s")
        assert moving["samples"] > first["samples"]
    finally:
        traffic.stop()
    assert traffic.error is None, traffic.error
    # (Not bal.wait_no_connections(): the page's own connections to --metrics stay open.)
    h.wait_for(lambda: all(m.channel("balance_channel_connections", s.address) == 0 for s in (a, b, c)), 15,
               "the proxied connections to end")

    # Once the traffic stops, the page settles on exactly the counters /metrics reports.
    def settled():
        v = browser.evaluate(ROW_VALUES % "0/0")
        want = (m.channel("balance_channel_connections_total", a.address),
                m.channel("balance_channel_sent_bytes_total", a.address))
        return v if (float(v["connections_total"]), float(v["sent_bytes_total"])) == want else None
    final = h.wait_for(settled, 15, "the page to show the final counters of /metrics")
    assert int(final["connections_total"]) == 1 + traffic.done == len(a.records)
    assert browser.evaluate("window.__sameDocument") is True, "the page reloaded instead of updating"
    assert browser.evaluate("document.getElementById('live').className") == "live up"

    png = browser.screenshot(tmp_path / "status-page.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10000
    extra = os.environ.get("BALANCE_STATUS_SCREENSHOT")
    if extra:
        shutil.copyfile(tmp_path / "status-page.png", extra)


def test_status_page_reports_a_lost_server(start_balance, backends, browser):
    """When balance goes away the page says so instead of silently showing stale numbers."""
    srv = backends(h.EchoServer())
    mport = h.free_port()
    bal = start_balance(h.free_port(), [srv.address], ["--metrics", f"127.0.0.1:{mport}"])
    Metrics(bal, mport)
    browser.navigate(f"http://127.0.0.1:{mport}/")
    h.wait_for(lambda: browser.evaluate(ROW_VALUES % "0/0"), 30, "the row of channel 0/0")
    bal.stop()
    h.wait_for(lambda: browser.evaluate("document.getElementById('live').className") == "live down", 30,
               "the page to show that balance does not answer")
