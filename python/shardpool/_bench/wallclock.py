"""Wall-clock time per operation, with the spread of the rounds.

Every case of a group is timed once per round, the rounds alternate between
the cases (so a burst of load on a shared machine hits all of them), and the
median round is reported with the fastest and slowest. Ratios are of
medians, to the group's first case.
"""

from __future__ import annotations

import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

from shardpool import BlockPool, ObjectPool, _core
from shardpool._bench.cases import Group
from shardpool._bench.references import MinimalPool
from shardpool._bench.report import Result

Progress = Callable[[], None]


def _summary(
    section: str, name: str, rounds: list[float], *, shardpool: bool, key: str = ""
) -> Result:
    return Result(
        section,
        name,
        statistics.median(rounds),
        shardpool=shardpool,
        ns_min=min(rounds),
        ns_max=max(rounds),
        key=key,
    )


def _with_ratios(results: list[Result]) -> list[Result]:
    """Marks the first row the reference and divides the rest by it."""
    results[0].reference = True
    for r in results:
        r.ratio = r.ns / results[0].ns
    return results


def run_group(group: Group, rounds: int, budget: float, progress: Progress) -> list[Result]:
    cases = [c for c in group.cases if c.available()]
    timers = [timeit.Timer(c.stmt, c.setup) for c in cases]
    numbers = []
    for timer in timers:
        # A short trial run sizes each case to the time budget of a round.
        trial = 20
        t = timer.timeit(trial)
        numbers.append(max(1, int(trial * budget / max(t, 1e-9))))
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(rounds):
        for i, timer in enumerate(timers):
            samples[i].append(timer.timeit(numbers[i]) / numbers[i] / cases[i].per * 1e9)
        progress()
    return _with_ratios(
        [
            _summary(group.title, c.name, s, shardpool=c.shardpool, key=c.key)
            for c, s in zip(cases, samples, strict=True)
        ]
    )


def threaded(make: Callable[[], Any], threads: int, ops: int) -> float:
    """Aggregate wall-clock ns per get+put with `threads` threads."""
    pool = make()
    start = threading.Barrier(threads + 1)

    def work() -> None:
        get, put = pool.get, pool.put
        start.wait()
        for _ in range(ops):
            put(get())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in workers:
        t.join()
    return (time.perf_counter() - t0) / (threads * ops) * 1e9


def thread_results(rounds: int, ops: int, progress: Progress) -> list[Result]:
    """4 threads on one pool against 1 thread, for each pool: the contention."""
    makers: dict[str, tuple[Callable[[], Any], bool]] = {
        "ObjectPool": (lambda: ObjectPool(object), True),
        "minimal pure-Python deque pool": (lambda: MinimalPool(object), False),
    }
    section = "4 threads vs 1 (aggregate ns per get+put)"
    results = []
    for name, (make, ours) in makers.items():
        one: list[float] = []
        four: list[float] = []
        for _ in range(rounds):  # alternated, as the single-thread cases
            one.append(threaded(make, 1, ops * 4))
            four.append(threaded(make, 4, ops))
        pair = _with_ratios(
            [
                _summary(section, f"{name}, 1 thread", one, shardpool=ours),
                _summary(section, f"{name}, 4 threads", four, shardpool=ours),
            ]
        )
        results += pair
        progress()
    # Each pair is its own comparison: the first row of each is a reference.
    return results


BOUNDED = "bounded pool, 4 threads / 2 objects, ~1 µs hold"


class _QueuePool:
    """The obvious bounded pool: a ``queue.Queue`` filled with the objects."""

    def __init__(self, objects: int) -> None:
        self.q: queue.Queue[object] = queue.Queue()
        for _ in range(objects):
            self.q.put(object())
        self.get, self.put = self.q.get, self.q.put


def bounded_round(pool: Any, threads: int, seconds: float, hold_ns: int) -> tuple[int, list[int]]:
    """``threads`` threads sharing ``pool`` for ``seconds``, each holding an
    object for ``hold_ns`` (a spin on the clock, not a sleep: a sleep would
    let the other threads run). Returns the gets done and each get's wait
    in ns (its whole call, waited or not)."""
    start = threading.Barrier(threads + 1)
    stop = threading.Event()
    waits: list[list[int]] = [[] for _ in range(threads)]
    clock = time.perf_counter_ns

    def work(mine: list[int]) -> None:
        get, put, record, stopped = pool.get, pool.put, mine.append, stop.is_set
        start.wait()
        while not stopped():
            t0 = clock()
            obj = get()
            t1 = clock()
            record(t1 - t0)
            until = t1 + hold_ns
            while clock() < until:
                pass
            put(obj)

    workers = [threading.Thread(target=work, args=(w,)) for w in waits]
    for t in workers:
        t.start()
    start.wait()
    time.sleep(seconds)
    stop.set()
    for t in workers:
        t.join()
    return sum(len(w) for w in waits), [x for w in waits for x in w]


def bounded_results(rounds: int, seconds: float, progress: Progress) -> list[Result]:
    """A bounded pool under contention: 4 threads share 2 objects, each
    holding one for about 1 µs. Throughput, and how long a get waits: the
    99th percentile (the usual get) and the worst (the fairness). The
    rounds alternate between the pools; each is timed over ``seconds``.

    The third row is a control: an unbounded ``ObjectPool``, whose gets
    never wait for an object, in the same loop. Its worst "wait" is what
    the GIL alone adds (a thread waiting for the GIL between its two clock
    reads while the others spin through whole switch intervals), so a
    bounded pool's worst wait can be told apart from the interpreter's."""
    makers: dict[str, tuple[Callable[[], Any], bool]] = {
        "queue.Queue pool (2 objects)": (lambda: _QueuePool(2), False),
        "ObjectPool(max_size=2)": (lambda: ObjectPool(object, max_size=2), True),
        "control: ObjectPool() unbounded, never waits": (lambda: ObjectPool(object), True),
    }
    rates: list[list[float]] = [[] for _ in makers]
    p99: list[list[float]] = [[] for _ in makers]
    worst: list[list[float]] = [[] for _ in makers]
    for _ in range(rounds):
        for i, (make, _ours) in enumerate(makers.values()):
            gets, waits = bounded_round(make(), 4, seconds, 1000)
            waits.sort()
            rates[i].append(gets / seconds)
            p99[i].append(float(waits[min(len(waits) - 1, len(waits) * 99 // 100)]))
            worst[i].append(float(waits[-1]))
        progress()
    results = []
    for title, unit, samples in (
        (
            f"{BOUNDED}: throughput (gets+puts per second, all threads; higher is better)",
            "ops/s",
            rates,
        ),
        (f"{BOUNDED}: wait per get, 99th percentile", "ns", p99),
        (f"{BOUNDED}: wait per get, worst", "ns", worst),
    ):
        rows = [
            _summary(title, name, found, shardpool=ours)
            for (name, (_make, ours)), found in zip(makers.items(), samples, strict=True)
        ]
        for r in rows:
            r.unit = unit
        results += _with_ratios(rows)
    return results


def import_results(rounds: int, progress: Progress) -> list[Result]:
    """``import shardpool`` in a fresh interpreter, by ``-X importtime``.

    The interpreter reports the cumulative time of the import itself, so the
    process's own start-up (tens of milliseconds, and noisy) is not in it.
    """
    section = "import shardpool in a fresh interpreter (ms, by -X importtime)"
    # (module, row, is shardpool): asyncio, the usual heavy import, for scale.
    modules = [
        ("asyncio", "import asyncio (for scale)", False),
        ("shardpool", "import shardpool", True),
    ]
    samples: list[list[float]] = [[] for _ in modules]
    for _ in range(rounds):  # alternated
        for (module, _row, _ours), found in zip(modules, samples, strict=True):
            found.append(_import_ms(module))
    progress()
    results = [
        _summary(section, row, found, shardpool=ours)
        for (_module, row, ours), found in zip(modules, samples, strict=True)
    ]
    for r in results:
        r.unit = "ms"
    return _with_ratios(results)


def _import_ms(module: str) -> float:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    # "import time:  self [us] | cumulative | imported package"; the
    # top-level line of the module (no indentation before its name).
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
        if m and m.group(2) == module:
            return int(m.group(1)) / 1000
    raise RuntimeError(f"no -X importtime line for {module}:\n{done.stderr[-2000:]}")


def rss_bytes() -> int:
    """Resident set size now (Linux), else the peak from ``getrusage``."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_results(cycles: int, progress: Progress) -> list[Result]:
    section = "memory"
    pool: ObjectPool[object] = ObjectPool(object)
    get, put = pool.get, pool.put
    put(get())
    before = rss_bytes()
    for _ in range(cycles):
        put(get())
    after = rss_bytes()
    progress()
    blocks = BlockPool(max_idle_bytes=1 << 20)
    held = [blocks.get(65536) for _ in range(64)]
    for b in held:
        b.release()
    idle = blocks.stats().bytes_idle
    rows = [
        ("idle storage per pooled object (its reference + 16)", _core._idle_slot_bytes()),
        (f"RSS change over {cycles:,} ObjectPool get+put cycles", after - before),
        ("BlockPool idle after 4 MiB released, max_idle_bytes = 1 MiB", idle),
    ]
    return [
        Result(
            section, name, float(v), ns_min=float(v), ns_max=float(v), unit="bytes", shardpool=True
        )
        for name, v in rows
    ]
