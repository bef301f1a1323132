"""The scenario examples in every variant, in quick mode, and the driver that judges them.

Each example checks its own output (HTTP responses, checksums, counts
against a reference) and fails otherwise; these tests check that every
variant ran and did the same work, that the pooled one used its pools and
got everything back, and what each scenario exists to show, where that is
a count rather than a time: how many database connections each variant
opened, how many Taggers existed, how many collections ran, how many pages
were faulted in. Times are never asserted: they are the driver's business.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from helpers import FREE_THREADED_BUILD, ROOT, load_module

EXAMPLES = ROOT / "examples"


def load_driver() -> ModuleType:
    return load_module("scenarios", ROOT / "benches" / "scenarios.py")


driver = load_driver()


def run_example(script: str, *flags: str, tmp_path: Path) -> dict[str, Any]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if script == "http_server.py" and 0 <= hard < 1100:
        pytest.skip(f"1000 connections need more open files than the hard limit, {hard}")
    out = tmp_path / f"{script}{'_'.join(flags)}.json"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", *flags, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stdout
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_scenario(name: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Every variant of a scenario of the driver, checked for what all of them must do."""
    scenario = driver.BY_NAME[name]
    results = {
        v: run_example(scenario.script, *scenario.flags, "--variant", v, tmp_path=tmp_path)
        for v in scenario.variants
    }
    for variant, result in results.items():
        assert result["variant"] == variant
        assert result["scenario"] == name
        assert result["operations"] > 0
        assert result["verified"] >= result["operations"]
        assert result["throughput"] > 0
        assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p999"]
        assert result["rss_peak_bytes"] > 0
        assert len(result["gc"]["collections"]) == 3
        if variant != "pooled":
            assert result["details"]["pools"] == {}, f"{variant} must not use a pool"
    assert len({r["checksum"] for r in results.values()}) == 1, "every variant did the same work"
    pools = results["pooled"]["details"]["pools"]
    assert pools
    for pool, stats in pools.items():
        assert stats["hits"] > 0, f"{pool} was never reused"
        assert stats["in_use"] == 0, f"{pool}: not everything came back"
    return results


def test_the_driver_runs_every_scenario_example() -> None:
    scripts = {s.script for s in driver.SCENARIOS}
    examples = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == examples - {"quickstart.py"}


def test_http_reuses_connections(tmp_path: Path) -> None:
    r = run_scenario("http", tmp_path)
    for result in r.values():
        d = result["details"]
        assert d["max_open_connections"] == d["connections"] == 1000
        assert d["answered_200"] == result["operations"], "4 workers stay under the limit"
        assert d["backend_connections_refused"] == 0
    assert r["unpooled"]["details"]["backend_connections_opened"] == r["unpooled"]["operations"]
    assert r["threadlocal"]["details"]["backend_connections_opened"] <= 4  # one per worker
    assert r["pooled"]["details"]["backend_connections_opened"] <= 4
    assert r["pooled"]["details"]["pools"]["backends"]["max_in_use"] <= 4


def test_http_thread_per_connection_only_the_pool_stays_under_the_limit(tmp_path: Path) -> None:
    r = run_scenario("http-thread-per-connection", tmp_path)
    limit = r["pooled"]["details"]["backend_limit"]
    assert limit == 100
    for result in r.values():
        d = result["details"]
        assert d["threads"] == 1000, "one thread per client connection"
        assert d["backend_connections_most"] <= limit
        assert d["answered_200"] + d["answered_503"] == result["operations"]
    # 1000 threads each keep the connection they opened: all but 100 are refused,
    # and their requests answered 503.
    local = r["threadlocal"]["details"]
    assert local["backend_connections_most"] == limit
    assert local["answered_503"] >= 1000 - limit
    pooled = r["pooled"]["details"]
    assert pooled["answered_503"] == 0
    assert pooled["backend_connections_most"] <= 8
    assert pooled["pools"]["backends"]["max_in_use"] <= 8


def test_objects_reuse_every_tagger(tmp_path: Path) -> None:
    r = run_scenario("objects", tmp_path)
    assert r["pooled"]["details"]["pools"]["taggers"]["created"] <= 4  # one per worker at most
    assert r["pooled"]["details"]["build_us"] > 0


def test_asyncio_bounds_the_taggers(tmp_path: Path) -> None:
    r = run_scenario("asyncio", tmp_path)
    built = {v: result["details"]["taggers_built"] for v, result in r.items()}
    most = {v: result["details"]["most_uploads_in_progress"] for v, result in r.items()}
    clients = r["pooled"]["details"]["clients"]
    assert built["unpooled"] == r["unpooled"]["operations"]
    assert built["freelist"] == most["freelist"] == clients, "an unbounded list grows to the peak"
    assert built["queue"] == built["pooled"] == 64
    assert most["pooled"] == 64
    assert r["pooled"]["details"]["pools"]["taggers"]["waits"] > 0


def test_gc_rows_reused_in_place_spare_the_collections(tmp_path: Path) -> None:
    r = run_scenario("gc-rows", tmp_path)
    young = {v: result["gc"]["collections"][0] for v, result in r.items()}
    if FREE_THREADED_BUILD:
        # Its collector counts containers allocated minus those freed (see
        # FREE_THREADED_BUILD): rows that die with their request start none.
        # Only unpooled requests leave garbage (each cycle keeps its 1,000
        # rows), which starts one or two collections in the run; reused or
        # broken cycles leave nothing to count, and start none.
        assert young["unpooled"] >= 1
        assert young["freeze"] >= 1
        assert young["manual"] == young["pooled"] == young["threadlocal"] == 0
        assert r["freeze"]["details"]["frozen_objects"] > 100_000
        assert r["unpooled"]["details"]["frozen_objects"] == 0
        return
    # Each request makes 1,000 rows: a young collection every request or two,
    # unless the rows are reused (thread-local or pooled state).
    assert young["unpooled"] >= r["unpooled"]["operations"] / 2
    assert young["manual"] >= r["manual"]["operations"] / 2
    assert young["pooled"] * 10 < young["unpooled"]
    assert young["threadlocal"] * 10 < young["unpooled"]
    assert r["freeze"]["details"]["frozen_objects"] > 100_000
    assert r["unpooled"]["details"]["frozen_objects"] == 0


def test_gc_cycles_are_garbage_unless_broken_or_reused(tmp_path: Path) -> None:
    r = run_scenario("gc-cycles", tmp_path)
    collected = {v: result["gc"]["collected"] for v, result in r.items()}
    assert collected["manual"] == collected["threadlocal"] == collected["pooled"] == 0
    if FREE_THREADED_BUILD:
        # Its collector waits until the containers counted pass a quarter of
        # the long-lived ones (300,000 here; gc_should_collect): a quick run's
        # cycles come nowhere near, so none is collected and the garbage,
        # 256 KiB bodies and all, stays until the end: memory, not collections.
        garbage = r["unpooled"]["operations"] * 256 * 1024
        kept = min(r[v]["rss_peak_bytes"] for v in ("manual", "threadlocal", "pooled"))
        assert r["unpooled"]["rss_peak_bytes"] - kept > garbage / 2
        assert r["freeze"]["rss_peak_bytes"] - kept > garbage / 2
        return
    assert collected["unpooled"] > 0
    assert collected["freeze"] > 0


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
@pytest.mark.skipif(
    FREE_THREADED_BUILD,
    reason="a free-threaded build takes bytearray memory from mimalloc, not glibc's malloc "
    "(Objects/obmalloc.c), which keeps freed segments: the mmap threshold governs "
    "no message's memory, so no message faults in fresh pages",
)
def test_buffers_with_a_fixed_mmap_threshold_fault_in_every_message(tmp_path: Path) -> None:
    r = run_scenario("buffers-mmap", tmp_path)
    faults = {v: result["minor_faults"] for v, result in r.items()}
    message_bytes = 0
    stats = r["pooled"]["details"]["pools"]["messages"]
    assert stats["puts"] == r["pooled"]["operations"]
    for result in r.values():
        assert result["details"]["mmap_threshold"] == 131072
        message_bytes = result["details"]["mib_per_s"] * result["seconds"] * 2**20
    # A fresh mapping per bytearray: at least a fault per 4 KiB of every message.
    assert faults["unpooled"] >= message_bytes / 4096 * 0.9
    assert faults["pooled"] < faults["unpooled"]
    assert faults["ring"] < faults["unpooled"] / 10  # the ring's buffers are made once


def test_buffers_default_allocator(tmp_path: Path) -> None:
    r = run_scenario("buffers", tmp_path)
    assert r["pooled"]["details"]["mmap_threshold"] is None


def test_json(tmp_path: Path) -> None:
    r = run_scenario("json", tmp_path)
    assert set(r["pooled"]["details"]["pools"]) == {"buffers", "codecs"}


# The driver ------------------------------------------------------------------------------------


def fake_run(throughput: float, p50: float, cpu_ms: float, rss: int) -> dict[str, Any]:
    return {
        "throughput": throughput,
        "seconds": 1.0,
        "operations": int(throughput),
        "cpu_seconds": 1.0,
        "latency_ms": {"p50": p50, "p99": p50 * 2, "p999": p50 * 3},
        "rss_peak_bytes": rss,
        "rss_growth_bytes": rss // 2,
        "minor_faults": 0,
        "gc": {
            "collections": [10, 1, 0],
            "cpu_ms": [cpu_ms, 0.0, 0.0],
            "wall_ms": [cpu_ms * 2, 0.0, 0.0],
            "max_wall_ms": cpu_ms,
            "max_cpu_ms": cpu_ms,
        },
        "details": {},
    }


def fake_runs(rounds: int) -> dict[str, list[dict[str, Any]]]:
    """json's three variants: pooled 1.4-1.6x the throughput, half the GC pause."""
    return {
        "unpooled": [fake_run(100, 10, 8, 100 << 20) for _ in range(rounds)],
        "threadlocal": [fake_run(150, 6, 4, 100 << 20) for _ in range(rounds)],
        "pooled": [fake_run(140 + 10 * (i % 3), 5, 4, 101 << 20) for i in range(rounds)],
    }


def test_summaries_pair_the_rounds_and_judge_full_runs_only() -> None:
    scenario = driver.BY_NAME["json"]
    rows = {r["metric"]: r for r in driver.summarize(scenario, fake_runs(5))}
    throughput = rows["throughput"]
    assert throughput["ratios"]["pooled"] == {"median": 1.5, "low": 1.4, "high": 1.6}
    assert throughput["pooled_vs_reuse"]["median"] == pytest.approx(1.0)
    assert throughput["verdict"] == "exceeded"
    assert rows["latency p50"]["verdict"] == "met"  # 0.5: -50%
    assert rows["GC pause total, CPU"]["verdict"] == "met"
    assert rows["RSS peak"]["verdict"] == "missed: within 5%"
    assert "minor page faults" not in rows, "a row of zeros is left out"
    for row in driver.summarize(scenario, fake_runs(1)):
        assert row.get("verdict", "") == "", "one round gives no verdict"


def test_a_claim_needs_every_round_on_one_side() -> None:
    claim = driver.THROUGHPUT
    assert claim.verdict(1.6, 1.5, 1.7) == "exceeded"
    assert claim.verdict(1.35, 1.31, 1.4) == "met"
    assert claim.verdict(1.2, 1.1, 1.3) == "missed: better, by less"
    assert claim.verdict(1.4, 0.9, 1.8) == "missed: no consistent difference"
    assert claim.verdict(1.03, 1.01, 1.05) == "missed: within 5%"
    assert claim.verdict(0.8, 0.7, 0.9) == "missed: worse"
    assert driver.GC_PAUSE.verdict(0.2, 0.1, 0.3) == "exceeded"


def test_rounds_rotate_the_order() -> None:
    order = list(driver.rounds_order(["a", "b", "c"], 3))
    firsts = [v for i, v in order if order.index((i, v)) % 3 == 0]
    assert firsts == ["a", "b", "c"]
    assert sorted(order) == [(i, v) for i in range(3) for v in "abc"]


def test_the_driver_quick_is_a_smoke_test(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "benches" / "scenarios.py"), "--quick"),
            *("--only", "json", "--out", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "smoke test" in done.stdout
    assert "| throughput | " in done.stdout
    assert "claim | verdict" not in done.stdout
    assert not re.search(r"\| (exceeded|met|missed)\b", done.stdout), "a smoke test judges nothing"
    report = json.loads((tmp_path / "scenarios.json").read_text())
    assert set(report["scenarios"]["json"]["runs"]) == {"unpooled", "threadlocal", "pooled"}
    for chart in ("scenarios.png", "scenarios_ratios.png"):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG")
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benches" / "scenarios.py"),
            "--report",
            str(tmp_path / "scenarios.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert again.stdout == done.stdout.split("wrote ")[0], "--report prints the same tables"


def test_the_driver_refuses_unknown_scenarios() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "scenarios.py"), "--only", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown scenarios: nosuch" in done.stderr
