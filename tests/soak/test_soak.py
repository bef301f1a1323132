"""Keeps ``tests/soak/soak.py`` working: a 3-second run must pass, and its
failure path (non-zero status) must work. The long run is done by hand:
``python tests/soak/soak.py --duration 660`` (see docs/data/soak/soak.txt)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent / "soak.py"


def run_soak(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SOAK), "--duration", "3", "--check-every", "1", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_short_soak_passes_with_no_violations_and_reports_everything():
    # Three seconds after a one-second warm-up, 16 threads are still filling
    # the pools up to their idle caps (once closed, RSS fell back by 60 MiB
    # in a run that grew 35.6 MiB): growth here is warm-up, not a leak. The
    # memory verdict is the long soak's (docs/data/soak/soak.txt).
    done = run_soak("--threads", "16", "--max-rss-growth-mib", "64")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "invariant violations: 0" in out
    assert "result: PASS" in out
    ops = int(re.search(r"operations: ([\d,]+)", out).group(1).replace(",", ""))
    assert ops > 0
    checks = int(re.search(r"checks: (\d+) pool balances", out).group(1))
    assert checks >= 7  # every pool kind was balanced at least once
    assert re.search(r"RSS: start [\d.]+ MiB .* end [\d.]+ MiB, growth [-+][\d.]+ MiB", out)
    assert "VIOLATION" not in done.stderr


def test_soak_fails_with_status_1_when_a_limit_is_broken():
    # An RSS "growth" limit no run can meet: the failure path must work.
    done = run_soak("--threads", "2", "--max-rss-growth-mib", "-100000")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "result: FAIL" in done.stdout
