"""`python -m shardpool bench`: the main job runs and reports every comparison."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import pytest

from shardpool import bench
from shardpool._bench import cases, instructions, wallclock

from helpers import FREE_THREADED_BUILD


def _bench(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardpool", "bench", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def test_bench_quick_prints_the_tables_and_writes_json_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    chart = tmp_path / "bench.png"
    done = _bench("--quick", "--json", str(out), "--plot", str(chart), check=True)
    headings = ("get+put round trip", "with-block borrow", "byte block of 1 MiB", "4 threads")
    more = ("100 B of output", "Python pool libraries", "GIL policy", "import shardpool", "memory")
    for heading in (*headings, *more):
        assert heading in done.stdout
    assert "Lower is better" in done.stdout
    assert "shardpool 0.1" in done.stdout.splitlines()[0]  # the machine line
    # shardpool's rows are marked, the references are not.
    assert "  * ObjectPool (checked, the default) " in done.stdout
    assert "  * BufferPool get+write(100 B)+release " in done.stdout
    assert "    deque pop+append pair " in done.stdout
    assert "    queue.SimpleQueue pool " in done.stdout
    # Every peer is installed here (requirements-dev.txt): none is reported missing.
    assert "Not measured" not in done.stdout
    assert chart.read_bytes().startswith(b"\x89PNG")

    data = json.loads(out.read_text())
    assert data["mode"] == "wall-clock"
    assert data["missing_peers"] == []
    results = data["results"]
    keys = {r["key"]: r for r in results if r["key"]}
    for key in ("objectpool_checked", "objectpool_unchecked", "borrow", "buffer", "block_64kib"):
        assert keys[key]["shardpool"]
    for key in ("deque_pair", "minimal_pool", "simple_queue", "bytearray_64b", "peer_fastalloc"):
        assert not keys[key]["shardpool"]
    timed = [r for r in results if r["unit"] != "bytes"]
    assert all(0 < r["ns_min"] <= r["ns"] <= r["ns_max"] for r in timed)
    memory = {r["case"]: r["ns"] for r in results if r["section"] == "memory"}
    assert any(v == 24 for k, v in memory.items() if k.startswith("idle storage"))
    # The first row of each group is its reference; ratios are to it.
    refs = [r for r in results if r["reference"]]
    assert {r["section"] for r in refs} == {r["section"] for r in timed}
    assert all(r["ratio"] == 1.0 for r in refs)
    by_section: dict[str, list[dict[str, Any]]] = {}
    for r in timed:
        by_section.setdefault(r["section"], []).append(r)
    for rows in by_section.values():
        base = rows[0]
        assert base["reference"]
        for r in rows[1:]:
            if not r["reference"]:  # the thread section has one reference per pool
                assert r["ratio"] > 0


def test_churn_compares_blockpool_with_bytearray_by_throughput_and_peak_rss(
    tmp_path: Path,
) -> None:
    """Issue 13's measurement: large-message churn, throughput in this
    process (rounds alternated), peak RSS of each side in a fresh one."""
    out = tmp_path / "churn.json"
    done = _bench("--churn", "--quick", "--json", str(out), check=True)
    assert "higher is better" in done.stdout
    assert "peak RSS of a fresh process" in done.stdout
    assert "  * BlockPool() (the defaults) " in done.stdout
    assert "    bytearray(n) (the reference) " in done.stdout
    results = json.loads(out.read_text())["results"]
    assert [(r["key"], r["unit"], r["reference"], r["shardpool"]) for r in results] == [
        ("churn_bytearray", "msg/s", True, False),
        ("churn_blockpool", "msg/s", False, True),
        ("churn_bytearray", "MiB", True, False),
        ("churn_blockpool", "MiB", False, True),
    ]
    for r in results:
        assert 0 < r["ns_min"] <= r["ns"] <= r["ns_max"]
    rss = [r for r in results if r["unit"] == "MiB"]
    # A peak is at least the process before the churn plus the largest
    # message's payload (4 MiB, built before the churn).
    assert all(r["ns"] >= r["extra"]["rss_before_churn_mib"] for r in rss)


def test_churn_sizes_are_fixed_and_spread_over_the_range() -> None:
    from shardpool._bench import churn

    sizes = churn.message_sizes()
    assert sizes == churn.message_sizes()
    assert len(sizes) == churn.MESSAGES
    assert all(churn.LOW <= n <= churn.HIGH for n in sizes)
    # Spread: every quarter of the range is used.
    quarter = (churn.HIGH - churn.LOW) / 4
    assert {int((n - churn.LOW) // quarter) for n in sizes} >= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="side must be one of"):
        churn.churner("deque")


def test_plot_without_matplotlib_fails_before_measuring(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "matplotlib" else real(name, package)

    def must_not_measure(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured although the chart cannot be drawn")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(wallclock, "run_group", must_not_measure)
    monkeypatch.setattr(instructions, "run", must_not_measure)
    for mode in ([], ["--instructions"]):
        assert bench.main([*mode, "--plot", str(tmp_path / "chart.png")]) == 2
        assert "pip install 'shardpool[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "chart.png").exists()


def test_missing_peers_are_named_with_the_command_that_adds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name in {"fastalloc", "pond"} else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert bench.missing_peers() == ["fastalloc", "pondpond"]
    note = bench.peers_note(["fastalloc", "pondpond"])
    assert note is not None
    assert "fastalloc, pondpond" in note
    assert "pip install 'shardpool[bench]'" in note
    assert "'.[bench]'" in note
    assert bench.peers_note([]) is None
    # A group leaves out what is missing and keeps the rest.
    group = cases.peer_group()
    timed = [c.key for c in group.cases if c.available()]
    assert "peer_fastalloc" not in timed
    assert "peer_pondpond" not in timed
    assert {"peer_shardpool", "peer_object_pool"} <= set(timed)


def test_instructions_without_valgrind_say_what_to_install(tmp_path: Path) -> None:
    # A PATH with no valgrind on it (the interpreter is called by its full path).
    env = {**os.environ, "PATH": str(tmp_path)}
    done = _bench("--instructions", env=env)
    assert done.returncode == 2
    assert "needs valgrind" in done.stderr
    assert "apt-get install valgrind" in done.stderr
    assert done.stdout == ""


def test_an_unknown_case_is_refused_with_the_list_of_cases() -> None:
    with pytest.raises(ValueError, match=r"unknown case 'nope'.*objectpool_checked.*import"):
        instructions.select(["nope"])
    done = _bench("--case", "deque_pair")
    assert done.returncode == 2
    assert "--case applies to --instructions only" in done.stderr


def test_every_target_names_measured_cases() -> None:
    keys = {c.key for c in cases.instruction_cases()}
    for target in instructions.TARGETS:
        assert target.case in keys
        assert target.versus in keys


def test_case_scripts_bind_the_setup_locally() -> None:
    # The statement reads local variables (LOAD_FAST), as a tuned loop does.
    script = instructions.case_script(cases.CHECKED)
    namespace: dict[str, Any] = {}
    exec(script.split("\ncase(")[0], namespace)
    code = namespace["case"].__code__
    assert "p" in code.co_varnames
    assert "p" not in code.co_names


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_counts_are_exact(tmp_path: Path) -> None:
    """Two runs count the same instructions per operation (to a thousandth:
    the extension's start-up varies by a few hundred per process, divided by
    N)."""
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}.json"
        done = _bench(
            "--instructions",
            *("--case", "deque_pair", "--case", "objectpool_checked"),
            *("--json", str(out)),
            check=True,
        )
        assert "Lower is better" in done.stdout
        assert "  * ObjectPool (checked, the default) " in done.stdout
        runs.append(json.loads(out.read_text()))
    first, second = ({r["key"]: r["ns"] for r in run["results"]} for run in runs)
    assert first.keys() == second.keys() == {"deque_pair", "objectpool_checked"}
    if FREE_THREADED_BUILD:
        # Its start-up is not deterministic: `python -S -c pass` under
        # cachegrind counted 42,504,011 to 42,513,535 Ir in three runs (ASLR
        # off too; 42,569,614 and 42,569,670 with -X gil=1), and two runs of
        # this test differed by up to 0.13 Ir per operation (26,000 Ir per
        # process over 200,000 iterations). Two runs agree to half an
        # instruction per operation there, an eighth of a percent of a deque pair.
        for key in ("deque_pair", "objectpool_checked"):
            assert first[key] == pytest.approx(second[key], abs=0.5)
        assert runs[0]["bare_loop"] == pytest.approx(runs[1]["bare_loop"], abs=0.5)
        assert runs[0]["bare_loop"] > 0
    else:
        assert first["deque_pair"] == second["deque_pair"]  # pure Python: to the instruction
        assert first["objectpool_checked"] == pytest.approx(second["objectpool_checked"], abs=0.01)
        assert runs[0]["bare_loop"] == runs[1]["bare_loop"] > 0
    # A deque pair is a few hundred instructions, and shardpool costs more.
    assert 100 < first["deque_pair"] < first["objectpool_checked"]
    (target,) = [t for t in runs[0]["targets"] if t["versus"] == "deque_pair"]
    assert target["case"] == "objectpool_checked"
    assert target["ratio"] == first["objectpool_checked"] / first["deque_pair"]
    assert target["met"] == (target["ratio"] <= 1.5)
    assert "import" not in runs[0]


def test_unknown_command_fails_with_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shardpool", "frobnicate"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "bench" in done.stderr
