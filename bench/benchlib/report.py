"""Medians over rounds, balance's ratio to the best peer, and the markdown tables."""
import statistics

from . import contenders

# key, label, which way is better, format, goal: (kind, value); kinds: ratio >=, ratio <=, abs <=
ROWS = [
    ("conn_rate", "new connections/s (ab -n {ab_n} -c {ab_c}, one HTTP exchange per connection)",
     "high", "k", (">=", 1.2)),
    ("cpu_us", "proxy CPU per connection (µs)", "low", "{:.0f}", ("<=", 0.8)),
    ("conn_segs", "TCP segments per connection, both sides (OutSegs; no goal)", "low", "{:.1f}",
     ("info", None)),
    ("conn_machine_us", "machine CPU per connection, every process (µs; no goal)", "low",
     "{:.0f}", ("info", None)),
    ("ka_rps", "keep-alive requests/s (wrk -t1 -c{wrk_c} -d{wrk_d}s)", "high", "k", (">=", 1.1)),
    ("ka_p99_ms", "p99 latency, keep-alive (ms)", "low", "{:.2f}", ("<=", 1.0)),
    ("ka_cpu_us", "proxy CPU per keep-alive request (µs; no goal)", "low", "{:.1f}",
     ("info", None)),
    ("ka_machine_us", "machine CPU per keep-alive request, every process (µs; no goal)", "low",
     "{:.1f}", ("info", None)),
    ("bulk1_gbps", "one bulk stream, Gbit/s (iperf3 -t {iperf_t})", "high", "{:.1f}", (">=", 1.1)),
    ("bulk4_gbps", "four bulk streams, Gbit/s (iperf3 -P 4)", "high", "{:.1f}", (">=", 1.2)),
    ("mem_kib", "memory per idle established connection (PSS growth, KiB)", "low", "{:.1f}",
     ("abs<=", 2.0)),
    ("hold_p99_ms", "{hold_n} connections held: no error, flat latency (p99 ms while held)",
     "low", "{:.2f}", ("pass", None)),
]
WORKLOAD_OF = {"conn_rate": "conn", "cpu_us": "conn", "conn_segs": "conn",
               "conn_machine_us": "conn", "ka_rps": "keepalive", "ka_p99_ms": "keepalive",
               "ka_cpu_us": "keepalive", "ka_machine_us": "keepalive", "bulk1_gbps": "bulk1",
               "bulk4_gbps": "bulk4", "mem_kib": "mem", "hold_p99_ms": "hold"}


def _fmt(fmt, v):
    if v is None:
        return "-"
    if fmt == "k":
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    text = fmt.format(v)
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def _counted(r, key):
    """A run's number for `key`, or None: a run that failed (a tool error, a refused, reset or
    non-2xx exchange) has none, whatever its tool printed (ab -r counts a reset connection as
    complete, and its rate then beats any proxy's)."""
    return None if r.get("error") else r.get(key)


def _values(results, contender, key):
    return [_counted(r, key) for r in results if r["contender"] == contender and _counted(r, key) is not None]


def medians(results, names):
    """{key: {contender: median or None}} plus {(workload, contender): [errors]}."""
    med = {key: {} for key, *_ in ROWS}
    for key, *_ in ROWS:
        for c in names:
            vals = _values(results, c, key)
            med[key][c] = statistics.median(vals) if vals else None
    errors = {}
    for r in results:
        if r.get("error"):
            errors.setdefault((r["workload"], r["contender"]), []).append(
                f"round {r['round']}: {r['error']}")
    return med, errors


def _hold_cell(results, c, p99):
    runs = [r for r in results if r["contender"] == c and r["workload"] == "hold"]
    if not runs:
        return "-"
    passed = sum(1 for r in runs if r.get("hold_pass"))
    verdict = "pass" if passed == len(runs) else f"FAIL {len(runs) - passed}/{len(runs)}"
    return f"{verdict}, {_fmt('{:.2f}', p99)}"


PREALLOCATED_KIB = 0.1  # below this, a proxy's memory did not grow: it preallocated its table


def _peer_names(names):
    # The other proxies; another build of balance only in an A/B run without them.
    return [c for c in contenders.PEERS if c in names] or [c for c in contenders.AB_PEERS if c in names]


def _best_peer(key, row_med, better, names):
    peer_names = _peer_names(names)
    peers = [(v, c) for c, v in row_med.items() if c in peer_names
             and v is not None and not (key == "mem_kib" and v < PREALLOCATED_KIB)]
    if not peers:
        return None, None
    return (max if better == "high" else min)(peers)


def _round_ratios(results, key, better, names):
    """balance / best peer within each round: pairs numbers taken minutes apart, not more."""
    ratios = []
    for rnd in sorted({r["round"] for r in results}):
        row = {r["contender"]: _counted(r, key) for r in results if r["round"] == rnd
               and _counted(r, key) is not None and WORKLOAD_OF[key] == r["workload"]}
        best, _ = _best_peer(key, row, better, names)
        if row.get("balance") is not None and best:
            ratios.append(row["balance"] / best)
    return ratios


def _goal(goal, ratio, bal, hold_ok, failed):
    kind, value = goal
    if kind == "info":
        return "-", "-"
    if failed and kind != "pass":  # a median without the failed runs says nothing sure
        return _goal(goal, None, None, False, False)[0], "-"
    if kind == "pass":
        return "pass, p99 flat", ("yes" if hold_ok else "no")
    if kind == "abs<=":
        return f"<= {value:g} KiB", ("-" if bal is None else "yes" if bal <= value else "no")
    met = "-" if ratio is None else "yes" if (ratio >= value if kind == ">=" else
                                               ratio <= value) else "no"
    return f"{kind} {value:g}x", met


def table(results, names, sizes, only):
    """The main markdown table: medians, balance / best peer, the issue's goal, met or not."""
    med, errors = medians(results, names)
    head = ["workload", *names, "balance / best peer", "goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, better, fmt, goal in ROWS:
        if WORKLOAD_OF[key] not in only:
            continue
        row = med[key]
        cells = []
        for c in names:
            cell = _hold_cell(results, c, row[c]) if key == "hold_p99_ms" else _fmt(fmt, row[c])
            if key == "mem_kib" and row[c] is not None and row[c] < PREALLOCATED_KIB:
                cell += " (preallocated)"
            if errors.get((WORKLOAD_OF[key], c)):
                cell += " (!)"
            cells.append(cell)
        best, best_name = _best_peer(key, row, better, names)
        bal = row.get("balance")
        ratio = bal / best if bal is not None and best else None
        hold_ok = all(r.get("hold_pass") for r in results
                      if r["contender"] == "balance" and r["workload"] == "hold") and any(
                          r["contender"] == "balance" and r["workload"] == "hold" for r in results)
        ratio_cell = "-" if ratio is None else f"{ratio:.2f} (vs {best_name})"
        rounds = _round_ratios(results, key, better, names)
        if ratio is not None and len(rounds) > 1:
            ratio_cell += f"; rounds {min(rounds):.2f}-{max(rounds):.2f}"
        # Not judged either when a peer failed every run: it has no number, so the best peer is
        # only the best of the others, which it might have beaten.
        failed = any(errors.get((WORKLOAD_OF[key], c)) for c in ("balance", best_name)) or any(
            row[c] is None and errors.get((WORKLOAD_OF[key], c)) for c in _peer_names(names))
        goal_text, met = _goal(goal, ratio, bal, hold_ok, failed)
        lines.append("| " + " | ".join([label.format(**sizes), *cells, ratio_cell, goal_text,
                                         met]) + " |")
    return "\n".join(lines), errors


def spread_table(results, names, only):
    """min-max over rounds for each cell: how much the shared machine moved the numbers."""
    head = ["workload (min-max over rounds)", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, _, fmt, _ in ROWS:
        if WORKLOAD_OF[key] not in only:
            continue
        cells = []
        for c in names:
            vals = _values(results, c, key)
            cells.append("-" if not vals else
                         f"{_fmt(fmt, min(vals))} - {_fmt(fmt, max(vals))} ({len(vals)})")
        lines.append("| " + " | ".join([key, *cells]) + " |")
    return "\n".join(lines)


STEAL_NOTED_PCT = 5.0  # a run in which the hypervisor took at least this share of the CPU


def disturbed_runs(results):
    """The runs that something besides their contender may have slowed, one line per round and
    workload: the hypervisor took STEAL_NOTED_PCT or more of the machine's CPU time, or a SYN
    was retransmitted (a connection that waited a second or more for its handshake). "" when
    there is none."""
    noted = {}  # (round, workload) -> ["contender what", ...], in the order the runs were made
    for r in results:
        steal, syns = r.get("steal_pct"), r.get("syn_retrans")
        why = []
        if steal is not None and steal >= STEAL_NOTED_PCT:
            why.append(f"{steal:.0f} % steal")
        if syns:
            why.append(f"{syns} SYN{'s' if syns > 1 else ''} retransmitted")
        if why:
            noted.setdefault((r["round"], r["workload"]), []).append(
                f"{r['contender']} {' and '.join(why)}")
    return "\n".join(f"- round {rnd}, {wl}: " + ", ".join(runs) for (rnd, wl), runs in noted.items())


# rate key, the goal's ratio, balance's CPU per unit, the machine's CPU per unit, the unit
BUDGETS = [("conn_rate", 1.2, "cpu_us", "conn_machine_us", "connection"),
           ("ka_rps", 1.1, "ka_cpu_us", "ka_machine_us", "keep-alive request")]


def budget_table(results, names, cpus):
    """What a rate goal asks of balance's own CPU, or "" when the run cannot say.

    A unit (a connection, a request) costs the machine balance's CPU plus the rest (the load
    generator, the backends, the kernel's work in their contexts). Keeping the rest and the
    machine's busy fraction as they were through balance, the goal's rate leaves the machine
    machine_us x rate / goal_rate per unit, and balance that minus the rest."""
    med, _ = medians(results, names)
    lines = []
    for rate_key, goal, cpu_key, machine_key, unit in BUDGETS:
        best, best_name = _best_peer(rate_key, med[rate_key], "high", names)
        rate, cpu, machine = (med[k].get("balance") for k in (rate_key, cpu_key, machine_key))
        peer_cpu = med[cpu_key].get(best_name)
        if None in (best, rate, cpu, machine) or not peer_cpu:
            continue
        allowed = machine * rate / (goal * best) - (machine - cpu)
        busy = rate * machine / 1e6 / cpus
        lines.append(f"| {unit} | {goal:g}x {best_name}'s {_fmt('k', best)}/s = "
                     f"{_fmt('k', goal * best)}/s | {busy * 100:.1f} % | {machine - cpu:.1f} | "
                     f"{allowed:.1f} ({allowed / peer_cpu:.2f}x {best_name}'s {peer_cpu:.1f}) | "
                     f"{cpu:.1f} ({cpu / peer_cpu:.2f}x {best_name}'s) |")
    if not lines:
        return ""
    head = ("| per | rate goal | machine busy through balance | rest of the machine's CPU (µs) "
            "| balance's CPU that leaves (µs) | balance's CPU now (µs) |")
    return "\n".join([head, "|---|---|---|---|---|---|", *lines])
