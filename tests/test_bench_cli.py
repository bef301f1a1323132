"""`python -m shardpool bench`: the main job runs and reports every comparison."""

import json
import subprocess
import sys
from pathlib import Path


def test_bench_quick_prints_the_tables_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "shardpool", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for heading in ("get+put round trip", "with-block borrow", "byte block of 1 MiB", "4 threads"):
        assert heading in done.stdout
    results = json.loads(out.read_text())["results"]
    cases = {(r["section"], r["case"]) for r in results}
    assert ("get+put round trip", "ObjectPool") in cases
    assert all(r["ns"] > 0 for r in results)
    refs = [r for r in results if r["reference"]]
    assert refs
    assert all(r["ratio"] == 1.0 for r in refs)


def test_unknown_command_fails_with_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shardpool", "frobnicate"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "bench" in done.stderr
