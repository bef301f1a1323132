"""Exact instruction counts per operation, under valgrind.

Wall-clock time on a shared machine moves by tens of percent between runs;
the number of instructions an operation executes does not. Each case runs
in a fresh interpreter under ``valgrind --tool=cachegrind --cache-sim=no``:
a function does the case's setup, then its statement in a loop. The
interpreter runs that function once to warm up (so the bytecode is
specialised), then once more with the loop run N times, or 0 times. The
difference between the two processes' totals, over N, is the cost of one
iteration; less the cost of an empty loop's iteration (measured the same
way), it is the cost of the operation.

Exact up to a thousandth of an instruction per operation. Python's own
counts repeat to the instruction (the hash seed is fixed); the extension's
start-up varies by a few hundred instructions between processes, because
PyO3 builds its type objects through a Rust ``HashMap`` seeded at random,
which changes the order of the types' attribute dictionaries. That varies
nothing per iteration, and N divides it down; the table shows whole
instructions.

The counts are user-space instructions (valgrind's ``Ir``): the kernel's
work (page faults of fresh memory, for large ``bytearray``) and the time an
instruction takes (cache misses, contention) are not in them; the
wall-clock mode measures those.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import shardpool
from shardpool._bench.cases import DEQUE_PAIR, Case, instruction_cases, instruction_groups
from shardpool._bench.report import LEGEND, SHARDPOOL_MARK, Result, machine_line

WARMUP = 300
"""Iterations of the warm-up call: CPython specialises a loop's bytecode
after a few dozen."""

# The setup runs inside the function, as with timeit: its names are locals.
SCRIPT = """\
import sys
sys.path.insert(0, {root!r})
from itertools import repeat

def case(_iterations):
{setup}
    for _ in repeat(None, _iterations):
{stmt}

case({warmup})
case(int(sys.argv[1]))
"""

BARE_LOOP = Case("bare_loop", "empty loop", "pass")
IMPORT_KEY = "import"
IMPORT_LIMIT = 30_000_000


@dataclass(frozen=True)
class Target:
    """One of issue 13's targets: ``case`` costs at most ``limit`` times ``versus``."""

    text: str
    case: str
    limit: float
    versus: str = DEQUE_PAIR.key


def _sized(template: str, key: str, limit: float) -> list[Target]:
    sizes = (("64 B", "64b"), ("64 KiB", "64kib"), ("1 MiB", "1mib"))
    return [Target(template.format(label), key.format(k), limit) for label, k in sizes]


TARGETS = [
    Target("ObjectPool get+put, checked (the default)", "objectpool_checked", 1.5),
    Target(
        "ObjectPool get+put, checked, vs the minimal pure-Python pool",
        "objectpool_checked",
        0.6,
        "minimal_pool",
    ),
    Target("ObjectPool(checked=False) get+put", "objectpool_unchecked", 1.2),
    Target("ObjectPool(max_size=1024) get+put", "objectpool_max_size", 1.5),
    Target("borrow() as a with block", "borrow", 4.5),
    Target("get_many/put_many(64) per object, checked", "batch_checked", 1.0),
    Target("get_many/put_many(64) per object, checked=False", "batch_unchecked", 0.5),
    *_sized("BlockPool get+release, {}", "block_{}", 2.5),
    Target("BlockPool get+release, 64 B, vs bytearray(64)", "block_64b", 0.8, "bytearray_64b"),
    *_sized("with BlockPool.get({}) as b", "block_with_{}", 4.5),
    Target("BufferPool get+write(100 B)+release", "buffer", 3.0),
]


def valgrind_missing() -> str | None:
    """Why the instruction mode cannot run here, or None if it can."""
    if shutil.which("valgrind") is None:
        return (
            "--instructions needs valgrind on PATH, which was not found. Install it "
            "(Debian/Ubuntu: apt-get install valgrind; Fedora: dnf install valgrind) "
            "or use the wall-clock mode (without --instructions)."
        )
    return None


def _count(argv: Sequence[str], env: dict[str, str]) -> int:
    """Instructions (Ir) a whole process executes, under cachegrind."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            *argv,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    m = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or m is None:
        raise RuntimeError(
            f"valgrind run failed (exit {done.returncode}): {' '.join(argv[:3])} ...\n"
            f"{done.stderr[-3000:]}"
        )
    return int(m.group(1).replace(",", ""))


def _environment() -> dict[str, str]:
    # The same hash seed in every process (str hashes decide dict layouts),
    # and no .pyc written midway (one process would compile, another load).
    return {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def case_script(case: Case) -> str:
    root = str(Path(shardpool.__file__).resolve().parent.parent)
    return SCRIPT.format(
        root=root,
        setup=textwrap.indent(case.setup or "pass", "    "),
        stmt=textwrap.indent(case.stmt, "        "),
        warmup=WARMUP,
    )


def _loop_runs(case: Case) -> list[list[str]]:
    """The two processes of a case: the loop run 0 times and N times.

    ``-S`` skips ``site`` (a third of start-up under valgrind); the script
    puts shardpool's directory on the path itself. The iteration count is
    padded so both command lines have the same length.
    """
    script = case_script(case)
    width = len(str(case.iterations))
    return [[sys.executable, "-S", "-c", script, str(n).zfill(width)] for n in (0, case.iterations)]


@dataclass
class Counted:
    case: Case
    ir: float
    """Instructions per operation, beyond the loop."""
    loop: float
    """Instructions per iteration, loop included (before subtraction)."""


@dataclass
class Measurement:
    counted: list[Counted]
    bare_loop: float
    """Instructions per iteration of an empty loop (subtracted from each case)."""
    imports: dict[str, int]
    """Total instructions of a bare interpreter and of ``import shardpool``."""
    seconds: float = 0.0


def measure(
    cases: Sequence[Case],
    with_import: bool,
    jobs: int,
    progress: Callable[[int, int], None],
) -> Measurement:
    """Every case's cost per operation, and (if asked) ``import shardpool``'s."""
    env = _environment()
    runs: list[list[str]] = []
    for c in (BARE_LOOP, *cases):
        runs += _loop_runs(c)
    imports: dict[str, list[str]] = {}
    if with_import:
        # Start-up as users have it (with site); `pass` padded to the same length.
        imports = {
            "bare interpreter": [sys.executable, "-c", "pass".ljust(len("import shardpool"))],
            "import shardpool": [sys.executable, "-c", "import shardpool"],
        }
        # Compile and cache every module once, outside the measurement.
        subprocess.run([sys.executable, "-c", "import shardpool"], check=True)
        runs += imports.values()
    done = 0

    def count(argv: list[str]) -> int:
        nonlocal done
        ir = _count(argv, env)
        done += 1
        progress(done, len(runs))
        return ir

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = list(pool.map(count, runs))
    bare = _per_iteration(BARE_LOOP, totals[0], totals[1])
    counted = []
    for i, c in enumerate(cases, start=1):
        loop = _per_iteration(c, totals[2 * i], totals[2 * i + 1])
        counted.append(Counted(c, (loop - bare) / c.per, loop))
    import_totals = dict(zip(imports, totals[len(totals) - len(imports) :], strict=True))
    return Measurement(counted, bare, import_totals)


def _per_iteration(case: Case, zero: int, n: int) -> float:
    return (n - zero) / case.iterations


def select(keys: Sequence[str]) -> tuple[list[Case], bool]:
    """The cases named by ``--case`` (all by default), and whether the import is."""
    every = instruction_cases()
    if not keys:
        return every, True
    by_key = {c.key: c for c in every}
    unknown = [k for k in keys if k not in by_key and k != IMPORT_KEY]
    if unknown:
        names = ", ".join([*by_key, IMPORT_KEY])
        raise ValueError(f"unknown case {', '.join(map(repr, unknown))}; the cases are: {names}")
    # The reference is always measured: every ratio is to it.
    chosen = [c for c in every if c.key in keys or c is DEQUE_PAIR]
    return chosen, IMPORT_KEY in keys


@dataclass
class Verdict:
    target: Target
    ratio: float
    met: bool


def verdicts(counted: Sequence[Counted]) -> list[Verdict]:
    ir = {c.case.key: c.ir for c in counted}
    return [
        Verdict(t, ratio, ratio <= t.limit)
        for t in TARGETS
        if t.case in ir and t.versus in ir
        for ratio in [ir[t.case] / ir[t.versus]]
    ]


def section_of(case: Case) -> str:
    return next(g.title for g in instruction_groups() if case in g.cases)


def results(counted: Sequence[Counted]) -> list[Result]:
    reference = next(c.ir for c in counted if c.case is DEQUE_PAIR)
    return [
        Result(
            section_of(c.case),
            c.case.name,
            c.ir,
            ratio=c.ir / reference,
            reference=c.case is DEQUE_PAIR,
            shardpool=c.case.shardpool,
            ns_min=c.ir,
            ns_max=c.ir,
            unit="Ir",
            key=c.case.key,
            extra={"iterations": c.case.iterations, "per": c.case.per},
        )
        for c in counted
    ]


def valgrind_version() -> str:
    done = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return done.stdout.strip()


def print_report(m: Measurement, out: TextIO) -> None:
    counted, imports = m.counted, m.imports
    reference = next(c for c in counted if c.case is DEQUE_PAIR)
    print(
        "Instructions per operation, counted under valgrind: exact, the same on every run.\n"
        "Lower is better. Ratios are to the deque pop+append pair.",
        file=out,
    )
    print(
        "Each case ran in a fresh interpreter with its loop run 0 and N times; the difference\n"
        f"over N, less an empty loop's iteration ({m.bare_loop:.0f} Ir), is one operation.",
        file=out,
    )
    print(LEGEND, file=out)
    width = max(len(c.case.name) for c in counted) + 4
    print(f"\n{'':<{width}}  {'Ir/op':>9}  {'x deque pair':>12}  {'N':>7}", file=out)
    section = ""
    for c in counted:
        if section_of(c.case) != section:
            section = section_of(c.case)
            print(section, file=out)
        label = f"  {SHARDPOOL_MARK if c.case.shardpool else ' '} {c.case.name}"
        ratio = "reference" if c is reference else f"{c.ir / reference.ir:.2f}x"
        print(f"{label:<{width}}  {c.ir:>9,.0f}  {ratio:>12}  {c.case.iterations:>7}", file=out)
    if imports:
        bare, full = imports["bare interpreter"], imports["import shardpool"]
        print(
            f"\nimport shardpool: {(full - bare) / 1e6:.1f} million instructions beyond a bare "
            f"interpreter ({full / 1e6:.1f} million against {bare / 1e6:.1f} million)",
            file=out,
        )
    checks = verdicts(counted)
    if checks or imports:
        width = max([len(v.target.text) for v in checks] + [31]) + 2
        print(f"\n{'Targets (issue 13)':<{width}}  {'measured':>9}  {'limit':>9}", file=out)
        for v in checks:
            print(
                f"  {v.target.text:<{width - 2}}  {v.ratio:>8.2f}x  {v.target.limit:>8.2f}x  "
                f"{'met' if v.met else 'MISSED'}",
                file=out,
            )
        if imports:
            beyond = imports["import shardpool"] - imports["bare interpreter"]
            print(
                f"  {'import shardpool (instructions)':<{width - 2}}  {beyond / 1e6:>8.1f}M  "
                f"{IMPORT_LIMIT / 1e6:>8.0f}M  {'met' if beyond <= IMPORT_LIMIT else 'MISSED'}",
                file=out,
            )
    print(f"\n{machine_line()}; {valgrind_version()}; measured in {m.seconds:.0f} s", file=out)


def json_extra(m: Measurement) -> dict[str, Any]:
    counted, imports = m.counted, m.imports
    extra: dict[str, Any] = {
        "valgrind": valgrind_version(),
        "bare_loop": m.bare_loop,
        "targets": [
            {
                "target": v.target.text,
                "case": v.target.case,
                "versus": v.target.versus,
                "ratio": v.ratio,
                "limit": v.target.limit,
                "met": v.met,
            }
            for v in verdicts(counted)
        ],
    }
    if imports:
        beyond = imports["import shardpool"] - imports["bare interpreter"]
        extra["import"] = {
            **imports,
            "beyond": beyond,
            "limit": IMPORT_LIMIT,
            "met": beyond <= IMPORT_LIMIT,
        }
    return extra


def run(keys: Sequence[str], jobs: int, out: TextIO) -> Measurement:
    cases, with_import = select(keys)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(
            f"\rcounting instructions... {done}/{total} valgrind runs",
            end="",
            file=sys.stderr,
            flush=True,
        )

    m = measure(cases, with_import, jobs, progress)
    m.seconds = time.perf_counter() - started
    print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    print_report(m, out)
    return m
