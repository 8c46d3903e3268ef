"""The churn soak's short version (tests/soak/soak.py; the long one is a documented command in
docs/RELIABILITY.md): 20,000 connections and 512 MiB through balance with faults injected at
random, every byte of every healthy connection checked, descriptors and RSS flat."""

import json
import os
import subprocess
import sys

import harness as h
from faults_support import figure

SOAK = os.path.join(h.REPO_ROOT, "tests", "soak", "soak.py")


def run_soak(tmp_path, *args, timeout=200):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, SOAK, "--balance", h.BALANCE_BIN, "--json", str(out), *args],
                          capture_output=True, text=True, timeout=h.scaled(timeout))
    assert out.exists(), f"soak wrote no summary (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.returncode, json.loads(out.read_text())


def test_churn_soak_short(binary, tmp_path):
    """20,000 short connections and 512 MiB of payload (echoed back) with random backend faults
    (resets, partial answers, slow answers, a refusing channel) and client faults (resets,
    vanishing), control commands throughout: no corrupted or lost byte on a healthy connection,
    no hang, descriptors back to the start, every c back to 0, RSS flat (plain builds)."""
    # A sanitized balance keeps freed memory in quarantine: its RSS is not the plain build's.
    slack = ["--rss-slack-kib", str(1 << 30)] if h.SANITIZED else []
    rc, s = run_soak(tmp_path, "--connections", "20000", "--bytes", "512M", "--seconds", str(h.scaled(100)), *slack)
    figure("soak_short", {k: s.get(k) for k in ("connections", "bytes_up", "bytes_down", "duration_s", "start",
                                                  "warm", "end", "peak_rss_kib", "errors", "by_fate")})
    assert rc == 0 and s["ok"], json.dumps({k: s.get(k) for k in ("checks", "error_samples", "errors", "start", "warm",
                                                                 "end", "stderr_tail")}, indent=1)
    assert s["errors"] == 0 and s["connections"] == 20000
    assert s["healthy_ok"] > 15000 and all(n > 0 for n in s["by_fate"].values()), s["by_fate"]


def test_soak_checker_catches_corruption(binary, tmp_path):
    """The soak's own check is not blind: when its backends flip one byte in every 50th echo
    connection, it reports those connections as corrupted and fails."""
    rc, s = run_soak(tmp_path, "--connections", "2000", "--bytes", "8M", "--seconds", str(h.scaled(60)),
                     "--inject-corruption", "50")
    assert rc == 1 and not s["ok"] and s["errors"] > 0
    assert all("CORRUPTED" in e for e in s["error_samples"]), s["error_samples"]
