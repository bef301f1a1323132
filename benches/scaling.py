"""Scaling across threads: aggregate nanoseconds per operation when 1 and 2
(or ``--threads``) threads hammer one shared pool, side by side in one process.

    python benches/scaling.py                    # 5 runs of 5 rounds, every case
    python benches/scaling.py --runs 5 --rounds 3 --cases objectpool,blockpool
    python benches/scaling.py --diagnostic       # also the experiments of docs/free-threading.md
    python benches/scaling.py --json scaling.json

Runs on any CPython; the figures that matter come from a free-threaded build
(``python3.14t``, see docs/free-threading.md), where threads run Python code
in parallel. On a GIL build, 2 threads can at best match 1.

How it measures:

- Each case is a statement run in a loop inside a function (its names are
  the function's locals, so no global or closure lookup is timed). The same
  threads would do what a program's threads do: they make the calls on a
  pool (or other object) that all of them share.
- A measurement starts ``T`` new threads. Each runs its loop briefly (so
  that first-use costs, such as a thread's first call into a pool, are not
  timed), then all meet at a barrier, and the main thread times the span
  from the barrier to the last thread's end. ``ns/op`` is that span divided
  by the operations of all threads: with perfect scaling, 2 threads halve it.
- ``speedup`` is ``ns/op at 1 thread / ns/op at T threads``: 2.0 is perfect
  on two cores, 1.0 means the threads serialize, below 1.0 they slow each
  other down.
- ``cpu/op x`` is the CPU time per operation at ``T`` threads over that at
  1 thread (each thread's ``time.thread_time()``): 1.00 when the threads do
  not slow each other down, higher when they fight over shared cache lines.
  It holds up better than ``speedup`` on a loaded machine, where the
  threads may not get two cores at once (the load average is printed).
- A run builds fresh pools and measures every case at every thread count,
  alternating the order, ``--rounds`` times; it keeps each case's median.
  Every run is reported, so bimodal behaviour shows as runs that disagree.
- The loop itself is a case ("empty loop"): its cost is part of every other
  figure and scales perfectly.

Diagnostic cases (``--diagnostic``) separate the causes: the same operations
on a pool per thread (nothing shared but type objects), a method call that
does no pool work on a shared pool and on per-thread pools (the cost of
sharing the pool object itself), and object creation for comparison.
"""

from __future__ import annotations

import argparse
import array
import itertools
import json
import os
import platform
import queue
import statistics
import sys
import sysconfig
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shardpool import BlockPool, BufferPool, ObjectPool
from shardpool._bench.references import MinimalPool as DequePool

KIB = 1 << 10


class LockListPool:
    """A pool as written before deques: a list guarded by a lock."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._factory = factory

    def get(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._factory()

    def put(self, obj: Any) -> None:
        with self._lock:
            self._idle.append(obj)


@dataclass
class Case:
    """``stmt`` run in a loop; ``setup()`` makes the names it uses."""

    name: str
    stmt: str
    setup: Callable[[], dict[str, Any]]
    # True: every thread gets its own setup() (nothing shared but types).
    per_thread: bool = False
    group: str = "main"


def simple_queue() -> dict[str, Any]:
    q: queue.SimpleQueue[object] = queue.SimpleQueue()
    q.put(object())
    return {"q": q, "f": object, "Empty": queue.Empty}


SIMPLE_QUEUE_STMT = """\
try:
    o = q.get_nowait()
except Empty:
    o = f()
q.put(o)"""


def cases() -> list[Case]:
    data = b"x" * 100
    return [
        Case("empty loop", "pass", dict),
        Case("ObjectPool get+put (checked)", "p.put(p.get())", lambda: {"p": ObjectPool(object)}),
        Case(
            "ObjectPool get+put (checked=False)",
            "p.put(p.get())",
            lambda: {"p": ObjectPool(object, checked=False)},
        ),
        Case("ObjectPool borrow()", "with p.borrow(): pass", lambda: {"p": ObjectPool(object)}),
        Case("BlockPool get+release 64 KiB", "p.get(n).release()", lambda: blocks(64 * KIB)),
        Case("BlockPool with get(64 KiB)", "with p.get(n): pass", lambda: blocks(64 * KIB)),
        Case(
            "BufferPool get+write(100 B)+release",
            "b = p.get(); b.write(d); b.release()",
            lambda: {"p": BufferPool(), "d": data},
        ),
        Case("deque pool get+put", "p.put(p.get())", lambda: {"p": DequePool(object)}),
        Case("Lock+list pool get+put", "p.put(p.get())", lambda: {"p": LockListPool(object)}),
        Case("queue.SimpleQueue get+put", SIMPLE_QUEUE_STMT, simple_queue),
        Case("bytearray(65536)", "f(n)", lambda: {"f": bytearray, "n": 64 * KIB}),
        Case("array.array('B')", "f(c)", lambda: {"f": array.array, "c": "B"}),
    ]


def blocks(n: int) -> dict[str, Any]:
    return {"p": BlockPool(), "n": n}


def diagnostic_cases() -> list[Case]:
    d = "diagnostic"
    per = "per-thread pool: "
    return [
        Case(
            per + "ObjectPool get+put (checked)",
            "p.put(p.get())",
            lambda: {"p": ObjectPool(object)},
            per_thread=True,
            group=d,
        ),
        Case(
            per + "ObjectPool get+put (checked=False)",
            "p.put(p.get())",
            lambda: {"p": ObjectPool(object, checked=False)},
            per_thread=True,
            group=d,
        ),
        Case(
            per + "ObjectPool borrow()",
            "with p.borrow(): pass",
            lambda: {"p": ObjectPool(object)},
            per_thread=True,
            group=d,
        ),
        Case(
            per + "BlockPool get+release 64 KiB",
            "p.get(n).release()",
            lambda: blocks(64 * KIB),
            per_thread=True,
            group=d,
        ),
        Case(
            per + "BufferPool get+write+release",
            "b = p.get(); b.write(d); b.release()",
            lambda: {"p": BufferPool(), "d": b"x" * 100},
            per_thread=True,
            group=d,
        ),
        Case(
            per + "deque pool get+put",
            "p.put(p.get())",
            lambda: {"p": DequePool(object)},
            per_thread=True,
            group=d,
        ),
        # A method that does no pool work: the cost of calling into the
        # extension on an object that every thread shares, or not.
        Case("shared ObjectPool: p.closed", "p.closed", lambda: {"p": ObjectPool(object)}, group=d),
        Case(
            per + "p.closed",
            "p.closed",
            lambda: {"p": ObjectPool(object)},
            per_thread=True,
            group=d,
        ),
        Case(
            "shared ObjectPool: len(p)",
            "f(p)",
            lambda: {"f": len, "p": ObjectPool(object)},
            group=d,
        ),
        Case(
            per + "len(p)",
            "f(p)",
            lambda: {"f": len, "p": ObjectPool(object)},
            per_thread=True,
            group=d,
        ),
        Case("shared deque: len(d)", "f(d)", lambda: {"f": len, "d": deque()}, group=d),
        Case("object()", "f()", lambda: {"f": object}, group=d),
        Case("bytearray(64)", "f(n)", lambda: {"f": bytearray, "n": 64}, group=d),
        Case("bytes(65536) (no pool)", "f(n)", lambda: {"f": bytes, "n": 64 * KIB}, group=d),
    ]


def compile_loop(case: Case, names: dict[str, Any]) -> Callable[..., None]:
    """``run(n, **names)``: the statement ``n`` times, its names as locals."""
    params = "".join(f", {k}" for k in names)
    body = "\n".join("        " + line for line in case.stmt.splitlines())
    src = f"def run(_n{params}):\n    for _ in _repeat(None, _n):\n{body}\n"
    scope: dict[str, Any] = {"_repeat": itertools.repeat}
    exec(compile(src, f"<case {case.name}>", "exec"), scope)
    run: Callable[..., None] = scope["run"]
    return run


def measure(
    case: Case, shared: dict[str, Any] | None, threads: int, ops: int
) -> tuple[float, float]:
    """`threads` new threads, `ops` operations each: the aggregate wall-clock
    ns per operation, and the CPU ns per operation (all threads' CPU time
    over all their operations)."""
    start = threading.Barrier(threads)
    spans = [(0.0, 0.0)] * threads
    cpu = [0.0] * threads
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            names = case.setup() if shared is None else shared
            run = compile_loop(case, names)
            run(max(ops // 50, 10), **names)  # first use, off the clock
            start.wait()
            began, cpu_began = time.perf_counter(), time.thread_time()
            run(ops, **names)
            spans[index] = (began, time.perf_counter())
            cpu[index] = time.thread_time() - cpu_began
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise RuntimeError(f"{case.name}: {errors!r}")
    # From the first thread's start to the last one's end.
    wall = max(end for _, end in spans) - min(began for began, _ in spans)
    return wall * 1e9 / (threads * ops), sum(cpu) * 1e9 / (threads * ops)


def calibrate(case: Case, seconds: float) -> int:
    """Operations per thread for a measurement of about `seconds` on one thread."""
    names = case.setup()
    run = compile_loop(case, names)
    n = 1000
    while True:
        t0 = time.perf_counter()
        run(n, **names)
        took = time.perf_counter() - t0
        if took > 0.02:
            return max(1000, int(n * seconds / took))
        n *= 4


@dataclass
class CaseResult:
    case: str
    group: str
    # Per run, per thread count (a string key, for JSON): the median over
    # the run's rounds of the wall-clock and of the CPU ns per operation.
    wall: list[dict[str, float]] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)

    def speedups(self, t: int) -> list[float]:
        """Per run: throughput at `t` threads over throughput at 1."""
        return [r["1"] / r[str(t)] for r in self.wall]

    def cpu_growth(self, t: int) -> list[float]:
        """Per run: CPU time per operation at `t` threads over that at 1
        (1.0: the threads do not slow each other down)."""
        return [r[str(t)] / r["1"] for r in self.cpu]


def run_once(
    selected: list[Case], counts: list[int], rounds: int, ops: dict[str, int]
) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
    """One run: fresh shared objects, every case at every count, `rounds`
    times; per case, the median wall and CPU ns/op at each count."""
    shared = {c.name: (None if c.per_thread else c.setup()) for c in selected}
    samples: dict[str, dict[int, list[tuple[float, float]]]] = {
        c.name: {t: [] for t in counts} for c in selected
    }
    for r in range(rounds):
        for case in selected:
            order = counts if r % 2 == 0 else counts[::-1]
            for t in order:
                samples[case.name][t].append(measure(case, shared[case.name], t, ops[case.name]))
    return {
        name: (
            {str(t): statistics.median(w for w, _ in v) for t, v in by_count.items()},
            {str(t): statistics.median(c for _, c in v) for t, v in by_count.items()},
        )
        for name, by_count in samples.items()
    }


def describe() -> str:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    build = "free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else "GIL build"
    return (
        f"{platform.python_implementation()} {platform.python_version()} ({build}, "
        f"GIL {'enabled' if gil else 'disabled'}), {os.cpu_count()} CPUs, {platform.machine()}"
    )


def load() -> str:
    try:
        return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def report(results: list[CaseResult], counts: list[int]) -> str:
    top = max(counts)
    width = max(len(r.case) for r in results)
    head = f"{'case':<{width}}  " + "  ".join(f"{f'{t} thr ns/op':>12}" for t in counts)
    head += f"  {f'speedup {top}/1':>13}  {'cpu/op x':>8}  speedup per run"
    lines = [head, "-" * len(head)]
    group = None
    for r in results:
        if r.group != group and group is not None:
            lines.append("")
        group = r.group
        medians = [statistics.median(run[str(t)] for run in r.wall) for t in counts]
        ups = r.speedups(top)
        lines.append(
            f"{r.case:<{width}}  "
            + "  ".join(f"{m:12.1f}" for m in medians)
            + f"  {statistics.median(ups):12.2f}x"
            + f"  {statistics.median(r.cpu_growth(top)):8.2f}"
            + "  "
            + " ".join(f"{u:.2f}" for u in ups)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="independent runs (fresh pools)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per run (median kept)")
    parser.add_argument("--seconds", type=float, default=0.1, help="per measurement, 1 thread")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--cases", default="", help="only cases whose name contains one of these")
    parser.add_argument("--diagnostic", action="store_true", help="add the diagnostic cases")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    counts = sorted({int(t) for t in args.threads.split(",")} | {1})
    selected = cases() + (diagnostic_cases() if args.diagnostic else [])
    if args.cases:
        wanted = [w.strip().lower() for w in args.cases.split(",")]
        selected = [c for c in selected if any(w in c.name.lower() for w in wanted)]
    if not selected:
        parser.error(f"no case matches --cases {args.cases!r}")
    print(describe(), flush=True)
    print(
        f"{args.runs} runs x {args.rounds} rounds, ~{args.seconds} s per measurement; {load()}\n"
        "ns/op: aggregate wall-clock ns per operation, median of the runs (lower is better); "
        "speedup: ns(1 thread) / ns(T threads), median and per run; "
        "cpu/op x: CPU time per operation at T threads over 1 thread (1.00: no interference)",
        flush=True,
    )
    ops = {c.name: calibrate(c, args.seconds) for c in selected}
    results = [CaseResult(c.name, c.group) for c in selected]
    for run in range(args.runs):
        medians = run_once(selected, counts, args.rounds, ops)
        for r in results:
            wall, cpu = medians[r.case]
            r.wall.append(wall)
            r.cpu.append(cpu)
        print(f"run {run + 1}/{args.runs} done; {load()}", file=sys.stderr, flush=True)
    print(report(results, counts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "python": describe(),
                    "threads": counts,
                    "results": [asdict(r) for r in results],
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
