"""`python -m shardpool bench`: the main job runs and reports every comparison."""

import json
import subprocess
import sys
from pathlib import Path


def test_bench_quick_prints_the_tables_and_writes_json_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    chart = tmp_path / "bench.png"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "shardpool", "bench", "--quick"),
            *("--json", str(out), "--plot", str(chart)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    headings = ("get+put round trip", "with-block borrow", "byte block of 1 MiB", "4 threads")
    for heading in (*headings, "Python pool libraries", "GIL policy", "memory"):
        assert heading in done.stdout
    assert chart.read_bytes().startswith(b"\x89PNG")
    results = json.loads(out.read_text())["results"]
    cases = {(r["section"], r["case"]) for r in results}
    assert ("get+put round trip", "ObjectPool (checked, the default)") in cases
    assert ("get+put round trip", "ObjectPool checked=False") in cases
    assert all(r["ns"] > 0 for r in results if r["section"] != "memory")
    memory = {r["case"]: r["ns"] for r in results if r["section"] == "memory"}
    assert any(v == 24 for k, v in memory.items() if k.startswith("idle storage"))
    refs = [r for r in results if r["reference"]]
    assert refs
    assert all(r["ratio"] == 1.0 for r in refs)


def test_unknown_command_fails_with_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shardpool", "frobnicate"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "bench" in done.stderr
