"""The workloads: each runs one load generator through one running contender and returns numbers.

A workload belongs to a family, which says what the contenders must be in front of: the two HTTP
backends ("http", and "idle" for the ones that hold connections, on freshly started contenders)
or the iperf3 server ("bulk").
"""
import json
import re
import time

from . import contenders, holder, procs

FULL = {"ab_n": 20000, "ab_c": 32, "wrk_c": 50, "wrk_d": 10, "iperf_t": 10,
        "mem_warm": 100, "mem_n": 2000, "hold_n": 9000, "hold_probes": 200, "hold_s": 5.0}
QUICK = {"ab_n": 500, "ab_c": 8, "wrk_c": 10, "wrk_d": 1, "iperf_t": 1,
         "mem_warm": 20, "mem_n": 200, "hold_n": 300, "hold_probes": 20, "hold_s": 0.5}


class Context:
    """What a workload needs besides the contender: sizes, the registry, the log, the profiler."""

    def __init__(self, reg, sizes, log_path, profiler=None):
        self.reg, self.sizes, self.log_path, self.profiler = reg, sizes, log_path, profiler

    def client(self, name, argv, timeout):
        return self.reg.run(name, argv, timeout, log_path=self.log_path)


class _Profiled:
    """Brackets a measurement with the profiler when the contender is the profiled one."""

    def __init__(self, ctx, workload, running):
        self.p = ctx.profiler if ctx.profiler and running.name == "balance" else None
        self.workload, self.running = workload, running

    def __enter__(self):
        if self.p:
            self.p.start(self.workload, self.running)

    def __exit__(self, *exc):
        if self.p:
            self.p.stop()


def _num(pattern, text, cast=float):
    m = re.search(pattern, text, re.M)
    return cast(m.group(1)) if m else None


def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_ab(out):
    """ab's summary: {"done", "failed", "rate", "body"}, None where a line is missing.

    failed counts ab's failed requests, its write errors and its non-2xx answers; body is the
    bytes of documents received ("HTML transferred")."""
    failed = sum(_num(pattern, out, int) or 0 for pattern in (
        r"^Failed requests:\s+(\d+)", r"^Write errors:\s+(\d+)", r"^Non-2xx responses:\s+(\d+)"))
    return {"done": _num(r"^Complete requests:\s+(\d+)", out, int), "failed": failed,
            "rate": _num(r"^Requests per second:\s+([\d.]+)", out),
            "body": _num(r"^HTML transferred:\s+(\d+) bytes", out, int)}


def ab_error(rc, ab, doc_len):
    """Why an ab run counts for nothing, or None. ab judges a response by the length of the first
    one: when that one was a close without an answer (a proxy that could not reach a backend),
    every such close is a "complete request" that failed nothing, at a rate no proxy reaches, so
    the bytes of documents received must be a whole document per completed request."""
    if rc != 0 or ab["rate"] is None or not ab["done"] or ab["failed"]:
        return f"ab rc={rc}, failed={ab['failed']}"
    if ab["body"] != ab["done"] * doc_len:
        return (f"ab: {ab['body']} bytes of documents for {ab['done']} requests "
                f"of {doc_len} bytes (closes without an answer)")
    return None


def conn(ctx, running):
    """New connections/s with ab (one exchange per connection), and the proxy's CPU per one."""
    s = ctx.sizes
    url = f"http://127.0.0.1:{running.port}/index.html"
    cpu0 = procs.session_cpu_seconds(running.sid) if running.sid else None
    segs0, busy0 = procs.tcp_segments_sent(), procs.machine_busy_seconds()
    with _Profiled(ctx, "conn", running):
        rc, out = ctx.client("ab", ["ab", "-r", "-s", "10", "-n", str(s["ab_n"]), "-c",
                                    str(s["ab_c"]), url], timeout=120)
    cpu1 = procs.session_cpu_seconds(running.sid) if running.sid else None
    segs1, busy1 = procs.tcp_segments_sent(), procs.machine_busy_seconds()
    ab = parse_ab(out)
    done = ab["done"]
    res = {"conn_rate": ab["rate"], "conn_failed": ab["failed"]}
    if running.sid and done:
        res["cpu_us"] = (cpu1 - cpu0) * 1e6 / done
    if done:  # the machine's counts: other work on it during the run would show here too
        res["conn_segs"] = (segs1 - segs0) / done
        res["conn_machine_us"] = (busy1 - busy0) * 1e6 / done
    error = ab_error(rc, ab, len(contenders.BODY.encode()))
    if error:
        res["error"] = error
    return res


def parse_wrk(out):
    """wrk --latency's summary: {"rps", "p99_ms", "requests", "errors"}, None where a line is
    missing; errors sums its socket errors (connect, read, write, timeout) and its non-2xx/3xx
    answers."""
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = sum(map(int, errs.groups())) if errs else 0
    bad += _num(r"Non-2xx or 3xx responses:\s+(\d+)", out, int) or 0
    return {"rps": _num(r"^Requests/sec:\s+([\d.]+)", out),
            "p99_ms": _ms(*m.groups()) if m else None,
            "requests": _num(r"^\s*(\d+) requests in ", out, int), "errors": bad}


def keepalive(ctx, running):
    """Requests/s and p99 over 50 keep-alive connections with wrk; the proxy's CPU and the whole
    machine's per request."""
    s = ctx.sizes
    url = f"http://127.0.0.1:{running.port}/index.html"
    cpu0 = procs.session_cpu_seconds(running.sid) if running.sid else None
    busy0 = procs.machine_busy_seconds()
    with _Profiled(ctx, "keepalive", running):
        rc, out = ctx.client("wrk", ["wrk", "-t1", f"-c{s['wrk_c']}", f"-d{s['wrk_d']}s",
                                     "--latency", url], timeout=s["wrk_d"] + 30)
    cpu1 = procs.session_cpu_seconds(running.sid) if running.sid else None
    busy1 = procs.machine_busy_seconds()
    wrk = parse_wrk(out)
    res = {"ka_rps": wrk["rps"], "ka_p99_ms": wrk["p99_ms"], "ka_errors": wrk["errors"]}
    done = wrk["requests"]
    if running.sid and done:
        res["ka_cpu_us"] = (cpu1 - cpu0) * 1e6 / done
    if done:
        res["ka_machine_us"] = (busy1 - busy0) * 1e6 / done
    # wrk exits 0 when it cannot connect at all; a run without a p99 has lost half its row
    if rc != 0 or not wrk["rps"] or wrk["p99_ms"] is None or wrk["errors"]:
        res["error"] = f"wrk rc={rc}, errors={wrk['errors']}" + (
            "" if wrk["rps"] and wrk["p99_ms"] is not None else ", no rate or p99 in its output")
    return res


def _iperf(ctx, running, streams, key):
    s = ctx.sizes
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(running.port), "-t", str(s["iperf_t"]),
            "-J", "--connect-timeout", "3000"] + (["-P", str(streams)] if streams > 1 else [])
    data = {}
    for attempt in range(4):  # the server refuses a test while it still winds up the last one
        with _Profiled(ctx, key, running):
            rc, out = ctx.client("iperf3", argv, timeout=s["iperf_t"] + 30)
        try:
            data = json.loads(out[out.find("{"):])
        except ValueError:
            data = {"error": out.strip()[-300:]}
        if "busy" not in data.get("error", ""):
            break
        time.sleep(1 + attempt)
    bps = data.get("end", {}).get("sum_received", {}).get("bits_per_second")
    res = {key: bps / 1e9 if bps else None}
    if not bps or data.get("error"):
        res["error"] = f"iperf3: {data.get('error', 'no result')}"
    return res


def bulk1(ctx, running):
    """One bulk stream through the proxy to the iperf3 server, Gbit/s."""
    return _iperf(ctx, running, 1, "bulk1_gbps")


def bulk4(ctx, running):
    """Four parallel bulk streams, Gbit/s summed."""
    return _iperf(ctx, running, 4, "bulk4_gbps")


def mem(ctx, running):
    """PSS growth of the proxy per idle established connection (after one exchange), KiB.

    A few connections are opened first so that one-time allocations (pools, event arrays) are
    not charged to the measured ones; then N more, PSS before/after, divided by N.
    """
    if not running.sid:
        return {}
    s = ctx.sizes
    warm, warm_err = holder.open_many(running.port, s["mem_warm"], timeout=30)
    held = []
    try:
        before = procs.session_pss_kib(running.sid)
        held, errors = holder.open_many(running.port, s["mem_n"], timeout=60)
        after = procs.session_pss_kib(running.sid)
    finally:
        holder.close_all(warm + held)
    errors = {k: warm_err.get(k, 0) + errors.get(k, 0) for k in {**warm_err, **errors}}
    res = {"mem_kib": (after - before) / max(len(held), 1), "mem_errors": errors}
    if errors or len(held) != s["mem_n"]:
        res["error"] = f"opened {len(held)}/{s['mem_n']}: {errors}"
    return res


def hold(ctx, running):
    """N connections held at once: none may fail, and request latency over them stays flat.

    Latency is probed with one exchange on random connections, first with only a handful open
    (the baseline), then while all N are held, the same number of probes spread over the same
    time. Flat: the held median <= max(2x, +1 ms) the baseline's, and the held p99 <= max(3x,
    +10 ms) the baseline's (bounds wide enough for a machine shared with builds).
    """
    s = ctx.sizes
    base, held, res = [], [], {}
    try:
        base, e0 = holder.open_many(running.port, 10, timeout=10)
        base_lat, be = holder.probe(base, s["hold_probes"], s["hold_s"]) if base else ([], 1)
        t0 = time.monotonic()
        held, errors = holder.open_many(running.port, s["hold_n"], timeout=90)
        res["hold_open_s"] = time.monotonic() - t0
        lat, pe = holder.probe(held, s["hold_probes"], s["hold_s"]) if held else ([], 1)
        closed = holder.closed_count(held + base)
    finally:
        holder.close_all(base + held)
    p50, b50 = holder.percentile(lat, 50), holder.percentile(base_lat, 50)
    p99, b99 = holder.percentile(lat, 99), holder.percentile(base_lat, 99)
    flat = None not in (p50, b50, p99, b99) and p50 <= max(2 * b50, b50 + 1) and \
        p99 <= max(3 * b99, b99 + 10)
    ok = not errors and not e0 and len(held) == s["hold_n"] and not pe and not be and not closed
    res.update({"hold_pass": ok and flat, "hold_p99_ms": p99, "hold_base_p99_ms": b99,
                "hold_p50_ms": p50, "hold_base_p50_ms": b50, "hold_held": len(held),
                "hold_errors": errors, "hold_probe_errors": pe + be, "hold_closed": closed})
    if not ok:  # a latency that is not flat fails the row but is not an error of the run
        res["error"] = (f"held {len(held)}/{s['hold_n']}, errors {errors or e0}, probe errors "
                        f"{pe + be}, closed {closed}")
    return res


# name -> (family, function); the order is the order they run in within a round
WORKLOADS = {
    "conn": ("http", conn), "keepalive": ("http", keepalive),
    "mem": ("idle", mem), "hold": ("idle", hold),
    "bulk1": ("bulk", bulk1), "bulk4": ("bulk", bulk4),
}
