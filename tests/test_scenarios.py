"""The scenario examples, pooled and unpooled, in quick mode: they do their work right and stop.

Each example checks its own output (HTTP responses, checksums, records that
round-trip) and fails otherwise; these tests check that it ran, that both
variants did the same work, and that the pooled one really used its pools
and got every object back.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCENARIOS = {
    "http_server.py": "requests",
    "json_processing.py": "records",
    "buffer_operations.py": "messages",
    "object_creation.py": "tasks",
}


def run_example(script: str, *flags: str, tmp_path: Path) -> dict[str, Any]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if script == "http_server.py" and 0 <= hard < 1100:
        pytest.skip(f"1000 connections need more open files than the hard limit, {hard}")
    out = tmp_path / f"{script}{''.join(flags)}.json"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", *flags, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stdout
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("script", list(SCENARIOS))
def test_scenario_pooled_and_unpooled(script: str, tmp_path: Path) -> None:
    unpooled = run_example(script, "--no-pool", tmp_path=tmp_path)
    pooled = run_example(script, tmp_path=tmp_path)
    for result, variant in ((unpooled, "unpooled"), (pooled, "pooled")):
        assert result["variant"] == variant
        assert result["unit"] == SCENARIOS[script]
        assert result["operations"] > 0
        assert result["verified"] >= result["operations"]
        assert result["throughput"] > 0
        assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p999"]
        assert result["rss_peak_bytes"] > 0
    assert pooled["checksum"] == unpooled["checksum"], "both variants did the same work"
    assert unpooled["details"].get("pools", {}) == {}
    pools = pooled["details"]["pools"]
    assert pools
    for name, stats in pools.items():
        assert stats["hits"] > 0, f"{name} was never reused"
        assert stats.get("in_use", stats.get("bytes_in_use")) == 0, f"{name} not all returned"


def test_http_holds_every_connection_and_answers_every_request(tmp_path: Path) -> None:
    result = run_example("http_server.py", "--pool-except-backend", tmp_path=tmp_path)
    assert result["variant"] == "pooled-except-backend"
    assert "backends" not in result["details"]["pools"]
    assert result["details"]["max_open_connections"] == result["details"]["connections"] == 1000
    assert result["details"]["served"] == result["verified"] == result["operations"]


def test_scenarios_driver_quick(tmp_path: Path) -> None:
    out = tmp_path / "scenarios.json"
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "benches" / "scenarios.py"), "--quick"),
            *("--only", "json", "--no-tracemalloc", "--json", str(out), "--plot", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| throughput | " in done.stdout
    assert "+30-50%" in done.stdout
    report = json.loads(out.read_text())
    rows = {row["metric"]: row for row in report["scenarios"]["json"]["rows"]}
    assert rows["throughput"]["ratios"]["pooled"]["median"] > 0
    assert rows["throughput"]["verdict"]
    for chart in ("scenarios.png", "scenarios_ratios.png"):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG")
    again = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "scenarios.py"), "--report", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert again.stdout == done.stdout.split("charts:")[0], "--report prints the same tables"
