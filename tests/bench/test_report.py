"""bench/benchlib/report.py, the arithmetic behind docs/PERFORMANCE.md's tables: medians over
rounds, balance against the best peer (never against itself, no proxy, or a preallocating proxy's
zero), the per-round ratios, and whether a goal is met. Pure functions on made-up results."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))

from benchlib import report  # noqa: E402

NAMES = ["direct", "haproxy", "nginx", "pen", "balance"]
SIZES = {"ab_n": 20000, "ab_c": 32, "wrk_c": 50, "wrk_d": 10, "iperf_t": 10, "hold_n": 9000}


def conn_run(rnd, contender, rate, cpu=None, error=None):
    r = {"round": rnd, "workload": "conn", "contender": contender, "conn_rate": rate, "cpu_us": cpu}
    if error:
        r["error"] = error
    return r


def row(text, label_start):
    lines = [line for line in text.splitlines() if line.startswith("| " + label_start)]
    assert len(lines) == 1, text
    return [cell.strip() for cell in lines[0].strip("|").split("|")]


def test_medians_per_contender_and_errors_by_workload():
    results = [conn_run(1, "pen", 6000), conn_run(2, "pen", 7000), conn_run(3, "pen", 9000),
               conn_run(1, "balance", 8000), conn_run(2, "balance", 30000, cpu=5, error="ab rc=0, failed=3327")]
    med, errors = report.medians(results, NAMES)
    assert med["conn_rate"]["pen"] == 7000
    # The failed run counts for nothing, neither as its tool's number (ab -r counts resets as
    # complete requests, at a rate no proxy reaches) nor as a zero.
    assert med["conn_rate"]["balance"] == 8000
    assert med["cpu_us"]["balance"] is None
    assert med["conn_rate"]["haproxy"] is None
    assert errors == {("conn", "balance"): ["round 2: ab rc=0, failed=3327"]}


def test_the_best_peer_is_never_no_proxy_balance_itself_or_a_preallocated_zero():
    rates = {"direct": 12000, "haproxy": 6000, "nginx": 6500, "pen": 6200, "balance": 7000}
    assert report._best_peer("conn_rate", rates, "high", NAMES) == (6500, "nginx")
    cpu = {"haproxy": 140, "nginx": 138, "pen": 126, "balance": 127}
    assert report._best_peer("cpu_us", cpu, "low", NAMES) == (126, "pen")
    mem = {"haproxy": 3.5, "nginx": 10.4, "pen": 0.0, "balance": 0.5}
    assert report._best_peer("mem_kib", mem, "low", NAMES) == (3.5, "haproxy")
    # A peer that is not in this run's contenders does not count either.
    assert report._best_peer("conn_rate", rates, "high", ["haproxy", "balance"]) == (6000, "haproxy")
    assert report._best_peer("conn_rate", {"balance": 7000}, "high", NAMES) == (None, None)
    # Another build of balance is the peer only in an A/B run without the other proxies.
    ab = {"haproxy": 6000, "balance-b": 6500, "balance": 6200}
    assert report._best_peer("conn_rate", ab, "high", ["haproxy", "balance", "balance-b"]) == (6000, "haproxy")
    assert report._best_peer("conn_rate", ab, "high", ["balance", "balance-b"]) == (6500, "balance-b")


def test_round_ratios_pair_numbers_of_the_same_round():
    results = [conn_run(1, "pen", 5000), conn_run(1, "balance", 6000),
               conn_run(2, "pen", 10000), conn_run(2, "balance", 9000)]
    assert report._round_ratios(results, "conn_rate", "high", NAMES) == [1.2, 0.9]


def test_a_goal_is_met_at_its_bound_and_not_beyond():
    results = []
    for rnd, (pen, bal) in enumerate([(5000, 6000), (6000, 7200), (7000, 8400)], start=1):
        results += [conn_run(rnd, "pen", pen, cpu=100), conn_run(rnd, "balance", bal, cpu=81)]
    text, errors = report.table(results, ["pen", "balance"], SIZES, {"conn"})
    assert not errors
    cells = row(text, "new connections/s")
    assert cells[0] == "new connections/s (ab -n 20000 -c 32, one HTTP exchange per connection)"
    assert cells[1:3] == ["6.0k", "7.2k"]
    assert cells[3] == "1.20 (vs pen); rounds 1.20-1.20"
    assert cells[4:] == [">= 1.2x", "yes"]
    cells = row(text, "proxy CPU per connection")
    assert cells[3].startswith("0.81 (vs pen)")
    assert cells[4:] == ["<= 0.8x", "no"]


def test_a_failed_run_is_marked_in_its_cell_and_decides_no_goal():
    results = [conn_run(1, "pen", 6000), conn_run(1, "balance", 7000),
               conn_run(2, "pen", 6000), conn_run(2, "balance", 20000, error="ab rc=0, failed=900")]
    text, errors = report.table(results, ["pen", "balance"], SIZES, {"conn"})
    assert errors == {("conn", "balance"): ["round 2: ab rc=0, failed=900"]}
    cells = row(text, "new connections/s")
    assert cells[2] == "7.0k (!)"
    assert cells[3] == "1.17 (vs pen)"  # round 1 only: no range from a single round
    assert cells[4:] == [">= 1.2x", "-"]
    assert report._round_ratios(results, "conn_rate", "high", ["pen", "balance"]) == [7000 / 6000]
    assert row(report.spread_table(results, ["pen", "balance"], {"conn"}), "conn_rate")[2] == "7.0k - 7.0k (1)"
    # A failed peer is no best peer's number either.
    results = [conn_run(1, "pen", 9000, error="ab rc=0, failed=12"), conn_run(1, "nginx", 6000),
               conn_run(1, "balance", 7000)]
    text, _ = report.table(results, ["nginx", "pen", "balance"], SIZES, {"conn"})
    assert row(text, "new connections/s")[4] == "1.17 (vs nginx)"


def _predecessors(orders):
    pairs = {}
    for order in orders:
        for before, after in zip(order, order[1:]):
            pairs[(before, after)] = pairs.get((before, after), 0) + 1
    return pairs


def test_the_rotation_varies_positions_and_predecessors():
    from benchlib import contenders
    names = ["direct", "haproxy", "nginx", "pen", "balance"]
    orders = [contenders.rotation(names, rnd) for rnd in range(1, 11)]
    assert all(sorted(o) == sorted(names) for o in orders)
    assert orders[0] == ["direct", "haproxy", "balance", "nginx", "pen"]
    # Over n rounds each contender takes every position once (rounds n+1..2n too).
    for block in (orders[:5], orders[5:]):
        for pos in range(5):
            assert sorted(o[pos] for o in block) == sorted(names)
    # Over 2n rounds (n odd) each contender runs right after each other one exactly twice...
    pairs = _predecessors(orders)
    assert len(pairs) == 5 * 4 and set(pairs.values()) == {2}
    # ...and in the default 3 rounds none has the same predecessor every time (a cyclic shift
    # put balance right after pen in all of them).
    for name in names:
        before = [o[o.index(name) - 1] for o in orders[:3] if o.index(name) > 0]
        assert len(set(before)) > 1, (name, before)
    assert contenders.rotation(names, 11) == orders[0]  # then the same again
    # An even number of contenders: every ordered pair once in n rounds.
    four = ["a", "b", "c", "d"]
    pairs = _predecessors([contenders.rotation(four, rnd) for rnd in range(1, 5)])
    assert len(pairs) == 4 * 3 and set(pairs.values()) == {1}
    assert [contenders.rotation(["balance", "balance-b"], rnd) for rnd in (1, 2, 3)] == [
        ["balance", "balance-b"], ["balance-b", "balance"], ["balance", "balance-b"]]


def test_holding_connections_passes_only_if_every_round_did():
    def hold(rnd, contender, ok, p99):
        return {"round": rnd, "workload": "hold", "contender": contender, "hold_pass": ok,
                "hold_p99_ms": p99}
    results = [hold(1, "nginx", True, 0.7), hold(2, "nginx", True, 0.8),
               hold(1, "balance", True, 0.6), hold(2, "balance", False, 9.0)]
    text, _ = report.table(results, ["nginx", "balance"], SIZES, {"hold"})
    cells = row(text, "9000 connections held")
    assert cells[1] == "pass, 0.75"
    assert cells[2] == "FAIL 1/2, 4.80"
    assert cells[4:] == ["pass, p99 flat", "no"]


def test_memory_of_a_preallocating_proxy_is_shown_as_such_and_the_goal_is_absolute():
    results = [{"round": 1, "workload": "mem", "contender": c, "mem_kib": v}
               for c, v in [("haproxy", 3.5), ("pen", 0.0), ("balance", 0.5)]]
    text, _ = report.table(results, ["haproxy", "pen", "balance"], SIZES, {"mem"})
    cells = row(text, "memory per idle")
    assert cells[1:4] == ["3.5", "0.0 (preallocated)", "0.5"]
    assert cells[4] == "0.14 (vs haproxy)"
    assert cells[5:] == ["<= 2 KiB", "yes"]


def test_the_spread_table_gives_min_max_and_the_count_of_rounds():
    results = [conn_run(1, "pen", 5200), conn_run(2, "pen", 7700), conn_run(3, "pen", 6100)]
    text = report.spread_table(results, ["pen", "balance"], {"conn"})
    cells = row(text, "conn_rate")
    assert cells[1:] == ["5.2k - 7.7k (3)", "-"]


def test_a_peer_that_failed_every_run_leaves_the_goal_undecided():
    # haproxy did not start (or every run of it failed): the best of nginx and pen is not the
    # best peer, and 1.4x against them says nothing about the goal.
    results = [conn_run(1, "haproxy", None, error="not running: haproxy did not start"),
               conn_run(1, "nginx", 5000, cpu=150), conn_run(1, "balance", 7000, cpu=100)]
    text, errors = report.table(results, ["haproxy", "nginx", "balance"], SIZES, {"conn"})
    assert errors == {("conn", "haproxy"): ["round 1: not running: haproxy did not start"]}
    cells = row(text, "new connections/s")
    assert cells[1] == "- (!)"
    assert cells[4] == "1.40 (vs nginx)"
    assert cells[5:] == [">= 1.2x", "-"]
    assert row(text, "proxy CPU per connection")[5:] == ["<= 0.8x", "-"]
    # A peer with no number and no failed run (not run for this row) is no reason.
    results = [conn_run(1, "nginx", 5000, cpu=150), conn_run(1, "balance", 7000, cpu=100)]
    text, _ = report.table(results, ["direct", "haproxy", "nginx", "balance"], SIZES, {"conn"})
    assert row(text, "new connections/s")[6:] == [">= 1.2x", "yes"]


def test_the_budget_a_rate_goal_leaves_balance():
    def run(contender, rate, cpu, machine):
        return {"round": 1, "workload": "conn", "contender": contender, "conn_rate": rate,
                "cpu_us": cpu, "conn_machine_us": machine}
    # balance: 10k/s at 100 us of machine CPU each (50 % of 2 CPUs busy), 40 of them its own.
    # 1.2x haproxy's 10k/s is 12k/s: at 50 % busy, 83.3 us of machine CPU each, of which the
    # rest takes 60: 23.3 us left for balance, 0.47x haproxy's 50.
    results = [run("haproxy", 10000, 50, 110), run("pen", 9000, 45, 120),
               run("balance", 10000, 40, 100)]
    text = report.budget_table(results, NAMES, 2)
    cells = row(text, "connection")
    assert cells[1] == "1.2x haproxy's 10.0k/s = 12.0k/s"
    assert cells[2] == "50.0 %" and cells[3] == "60.0"
    assert cells[4] == "23.3 (0.47x haproxy's 50.0)" and cells[5] == "40.0 (0.80x haproxy's)"
    assert "keep-alive" not in text  # no keep-alive runs: no row
    # Without the machine's CPU (an older JSON) or the peer's own CPU, nothing to say.
    for drop in ("conn_machine_us", "cpu_us"):
        bare = [{k: v for k, v in r.items() if k != drop or r["contender"] != (
            "balance" if drop == "conn_machine_us" else "haproxy")} for r in results]
        assert report.budget_table(bare, NAMES, 2) == ""


def test_runs_the_machine_disturbed_are_listed_by_round_and_workload():
    quiet = {**conn_run(1, "pen", 7000), "steal_pct": 4.9, "syn_retrans": 0}
    stolen = {**conn_run(1, "balance", 1200), "steal_pct": 38.2, "syn_retrans": 0}
    stolen_too = {**conn_run(1, "haproxy", 4000), "steal_pct": 12.0, "syn_retrans": 0}
    retried = {**conn_run(2, "haproxy", 5000), "steal_pct": 0.0, "syn_retrans": 3}
    both = {**conn_run(2, "balance", 900), "steal_pct": 5.0, "syn_retrans": 1}
    older = conn_run(3, "pen", 7000)  # a run recorded before these counts were kept
    text = report.disturbed_runs([quiet, stolen, stolen_too, retried, both, older])
    assert text.splitlines() == [
        "- round 1, conn: balance 38 % steal, haproxy 12 % steal",
        "- round 2, conn: haproxy 3 SYNs retransmitted, balance 5 % steal and 1 SYN retransmitted"]
    assert report.disturbed_runs([quiet, older]) == ""
