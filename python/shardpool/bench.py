"""Measure shardpool on this machine beside the references it should beat.

    python -m shardpool bench [--quick] [--json PATH] [--plot PATH]

Every case runs in this one process, interleaved over several rounds, and
the best round of each is kept, so the ratios compare like with like even on
a busy machine. Times are per operation and include the timing loop's own
cost (shown as "empty loop"); ratios are against the bare ``deque``
pop+append pair, the floor of any reuse from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import sys
import threading
import time
import timeit
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from typing import Any

from shardpool import BlockPool, ObjectPool, __version__, _core


class MinimalPool:
    """The smallest useful pure-Python pool: a deque of idle objects.

    ``deque.pop`` and ``deque.append`` are atomic under the GIL, so this is
    also the fastest thread-safe pool one can write in Python (without
    bounds, resets, stats or any check).
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._idle: deque[Any] = deque()
        self._factory = factory

    def get(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            return self._factory()

    def put(self, obj: Any) -> None:
        self._idle.append(obj)


class ClassBorrow:
    """A hand-written class-based context manager over ``MinimalPool``."""

    def __init__(self, pool: MinimalPool) -> None:
        self.pool = pool

    def __enter__(self) -> Any:
        self.obj = self.pool.get()
        return self.obj

    def __exit__(self, *exc: object) -> None:
        self.pool.put(self.obj)


@contextlib.contextmanager
def generator_borrow(pool: MinimalPool) -> Generator[Any, None, None]:
    obj = pool.get()
    try:
        yield obj
    finally:
        pool.put(obj)


@dataclass
class Result:
    section: str
    case: str
    ns: float
    """Nanoseconds per operation (per object for batches)."""
    ratio: float = 0.0
    """``ns`` over the reference of its section."""
    reference: bool = False


@dataclass
class Case:
    section: str
    name: str
    stmt: str
    namespace: dict[str, Any]
    per: int = 1
    reference: bool = False


def object_cases() -> list[Case]:
    d: deque[Any] = deque([object()])
    mini = MinimalPool(object)
    checked: ObjectPool[object] = ObjectPool(object)
    unchecked: ObjectPool[object] = ObjectPool(object, checked=False)
    bounded: ObjectPool[object] = ObjectPool(object, max_size=1024)
    simple: queue.SimpleQueue[object] = queue.SimpleQueue()
    simple.put(object())
    batch: ObjectPool[object] = ObjectPool(object, max_idle=64)
    batch.put_many(batch.get_many(64))
    unchecked_batch: ObjectPool[object] = ObjectPool(object, max_idle=64, checked=False)
    unchecked_batch.put_many(unchecked_batch.get_many(64))
    for p in (checked, unchecked, bounded):
        p.put(p.get())
    mini.put(mini.get())
    rt = "get+put round trip"
    w = "with-block borrow"
    return [
        Case(rt, "deque pop+append pair", "d.append(d.pop())", {"d": d}, reference=True),
        Case(rt, "minimal pure-Python deque pool", "p.put(p.get())", {"p": mini}),
        Case(rt, "queue.SimpleQueue", "q.put(q.get_nowait())", {"q": simple}),
        Case(rt, "ObjectPool (checked, the default)", "p.put(p.get())", {"p": checked}),
        Case(rt, "ObjectPool checked=False", "p.put(p.get())", {"p": unchecked}),
        Case(rt, "ObjectPool max_size=1024", "p.put(p.get())", {"p": bounded}),
        Case(
            rt,
            "ObjectPool get_many/put_many(64), per object",
            "p.put_many(p.get_many(64))",
            {"p": batch},
            per=64,
        ),
        Case(
            rt,
            "ObjectPool checked=False get_many/put_many(64), per object",
            "p.put_many(p.get_many(64))",
            {"p": unchecked_batch},
            per=64,
        ),
        Case(w, "deque pop+append pair", "d.append(d.pop())", {"d": d}, reference=True),
        Case(
            w, "class-based context manager", "with B(p) as o: pass", {"B": ClassBorrow, "p": mini}
        ),
        Case(w, "@contextmanager", "with g(p) as o: pass", {"g": generator_borrow, "p": mini}),
        Case(w, "ObjectPool.borrow()", "with p.borrow() as o: pass", {"p": checked}),
    ]


BLOCK_SIZES = [64, 4096, 65536, 1 << 20, 16 << 20]


def size_label(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def block_cases() -> list[Case]:
    pool = BlockPool()
    cases = []
    for n in BLOCK_SIZES:
        pool.get(n).release()  # one idle block in each class
        section = f"byte block of {size_label(n)}"
        cases.append(Case(section, "bytearray(n)", "bytearray(n)", {"n": n}, reference=True))
        cases.append(
            Case(
                section, "BlockPool get(n).release()", "get(n).release()", {"get": pool.get, "n": n}
            )
        )
        cases.append(
            Case(section, "with BlockPool.get(n)", "with get(n): pass", {"get": pool.get, "n": n})
        )
    return cases


def run_cases(
    cases: list[Case], rounds: int, budget: float, progress: Callable[[], None]
) -> list[Result]:
    timers = [timeit.Timer(c.stmt, globals=c.namespace) for c in cases]
    numbers = []
    for timer in timers:
        # A short trial run sizes each case to the time budget of a round.
        trial = 20
        t = timer.timeit(trial)
        numbers.append(max(1, int(trial * budget / max(t, 1e-9))))
    best = [float("inf")] * len(cases)
    for _ in range(rounds):
        for i, timer in enumerate(timers):
            ns = timer.timeit(numbers[i]) / numbers[i] / cases[i].per * 1e9
            best[i] = min(best[i], ns)
        progress()
    results = [
        Result(c.section, c.name, ns, reference=c.reference)
        for c, ns in zip(cases, best, strict=True)
    ]
    for r in results:
        ref = next(x for x in results if x.section == r.section and x.reference)
        r.ratio = r.ns / ref.ns
    return results


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


def thread_results(rounds: int, ops: int, progress: Callable[[], None]) -> list[Result]:
    makers: dict[str, Callable[[], Any]] = {
        "ObjectPool": lambda: ObjectPool(object),
        "minimal pure-Python deque pool": lambda: MinimalPool(object),
    }
    results = []
    for name, make in makers.items():
        one = min(threaded(make, 1, ops * 4) for _ in range(rounds))
        four = min(threaded(make, 4, ops) for _ in range(rounds))
        section = "4 threads vs 1 (aggregate ns per get+put)"
        results.append(Result(section, f"{name}, 1 thread", one, 1.0, reference=True))
        results.append(Result(section, f"{name}, 4 threads", four, four / one))
        progress()
    # Each pair is its own comparison: keep the reference of each name.
    return results


class _Plain:
    """An ordinary instance, for the pool libraries that want a class."""


def peer_cases() -> list[Case]:
    """The Python pool libraries on PyPI, where installed (``bench`` extra)."""
    section = "Python pool libraries (get+put round trip; ratio to ObjectPool)"
    plain: ObjectPool[object] = ObjectPool(_Plain)
    plain.put(plain.get())
    cases = [Case(section, "shardpool ObjectPool", "p.put(p.get())", {"p": plain}, reference=True)]
    # The libraries that offer a context manager, beside borrow().
    with_section = "Python pool libraries (with-block; ratio to ObjectPool.borrow())"
    with_block = "with p.{}() as o:\n    pass"
    cases.append(
        Case(
            with_section,
            "shardpool ObjectPool.borrow()",
            with_block.format("borrow"),
            {"p": plain},
            reference=True,
        )
    )
    with contextlib.suppress(ImportError):
        from object_pool import ObjectPool as Peer

        pool = Peer(_Plain)
        cases.append(Case(section, "object-pool", "p.put(p.get())", {"p": pool}))
        cases.append(
            Case(with_section, "object-pool item()", with_block.format("item"), {"p": pool})
        )
    with contextlib.suppress(ImportError):
        from fastalloc import ThreadSafePool

        fa = ThreadSafePool(_Plain, 1024)
        cases.append(Case(section, "fastalloc ThreadSafePool", "p.release(p.get())", {"p": fa}))
        cases.append(
            Case(with_section, "fastalloc allocate()", with_block.format("allocate"), {"p": fa})
        )
    with contextlib.suppress(ImportError):
        from pond import Pond, PooledObject, PooledObjectFactory

        class Factory(PooledObjectFactory):  # type: ignore[misc, unused-ignore]
            def createInstance(self) -> Any:
                return PooledObject(_Plain())

            def destroy(self, pooled_object: Any) -> None:
                pass

            def reset(self, pooled_object: Any, **kwargs: Any) -> Any:
                return pooled_object

            def validate(self, pooled_object: Any) -> bool:
                return True

        pond = Pond(borrowed_timeout=60, time_between_eviction_runs=-1)
        factory = Factory(pooled_maxsize=8, least_one=True)
        pond.register(factory)
        cases.append(
            Case(section, "pondpond", "p.recycle(p.borrow(f), f)", {"p": pond, "f": factory})
        )
    with contextlib.suppress(ImportError):
        from syncpool_py.pools.syncpool import SyncObjectPool

        sp = SyncObjectPool(obj=_Plain)
        # Its get() returns None when empty instead of creating: prime it.
        sp.put(sp.get_new_obj())
        cases.append(Case(section, "syncpool-py", "p.put(p.get())", {"p": sp}))
    return cases


def gil_cases() -> list[Case]:
    """What leaving the interpreter costs, beside the work that justifies it."""
    section = "GIL policy: a detach+attach beside the work it must pay for"
    blocks = BlockPool(zero="release")
    for n in (65536, 1 << 20):
        blocks.get(n).release()
    return [
        Case(
            section,
            "call into the extension (attached)",
            "f()",
            {"f": _core._attached_noop},
            reference=True,
        ),
        Case(section, "call that detaches and re-attaches", "f()", {"f": _core._detached_noop}),
        Case(
            section,
            "ObjectPool get+put (stays attached)",
            "p.put(p.get())",
            {"p": ObjectPool(object)},
        ),
        Case(
            section,
            "zeroing 64 KiB (attached: below 256 KiB)",
            "get(65536).release()",
            {"get": blocks.get},
        ),
        Case(section, "zeroing 1 MiB (detached)", "get(1 << 20).release()", {"get": blocks.get}),
    ]


def rss_bytes() -> int:
    """Resident set size now (Linux), else the peak from ``getrusage``."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_results(cycles: int, progress: Callable[[], None]) -> list[Result]:
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
    return [
        Result(
            section,
            "idle storage per pooled object (its reference + 16)",
            float(_core._idle_slot_bytes()),
            1.0,
            reference=True,
        ),
        Result(
            section,
            f"RSS change over {cycles:,} ObjectPool get+put cycles",
            float(after - before),
            0.0,
        ),
        Result(
            section,
            "BlockPool idle after 4 MiB released, max_idle_bytes = 1 MiB",
            float(idle),
            idle / (1 << 20),
        ),
    ]


def print_table(results: list[Result], out: Any) -> None:
    sections: dict[str, list[Result]] = {}
    for r in results:
        sections.setdefault(r.section, []).append(r)
    for section, rows in sections.items():
        print(f"\n{section}", file=out)
        width = max(len(r.case) for r in rows)
        for r in rows:
            if section == "memory":
                print(f"  {r.case:<{width}}  {r.ns:12,.0f} bytes", file=out)
                continue
            mark = "(reference)" if r.reference else f"{r.ratio:8.2f}x"
            print(f"  {r.case:<{width}}  {r.ns:12.1f} ns  {mark:>11}", file=out)


def plot(results: list[Result], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections: dict[str, list[Result]] = {}
    for r in results:
        if r.section != "memory":  # bytes, not time
            sections.setdefault(r.section, []).append(r)
    rows_total = sum(len(rows) for rows in sections.values())
    fig, axes = plt.subplots(len(sections), 1, figsize=(9, 1.5 + 0.42 * rows_total))
    for ax, (section, rows) in zip(axes, sections.items(), strict=True):
        ax.barh(
            [r.case for r in rows],
            [r.ns for r in rows],
            color=["#999999" if r.reference else "#1f77b4" for r in rows],
        )
        for i, r in enumerate(rows):
            ax.annotate(f" {r.ns:,.0f} ns", (r.ns, i), va="center", fontsize=7)
        ax.set_title(section, fontsize=9, loc="left")
        # Bars grow from 1 ns on a log axis, so lengths compare honestly.
        ax.set_xscale("log")
        ax.set_xlim(1, max(r.ns for r in rows) * 8)
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
    axes[-1].set_xlabel("ns per operation (log scale; grey: the reference of each group)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shardpool bench",
        # No docstrings under python -OO.
        description=(__doc__ or "Measure shardpool on this machine.").splitlines()[0],
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds, less precise")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    args = parser.parse_args(argv)
    rounds, budget, ops = (2, 0.003, 20_000) if args.quick else (9, 0.08, 200_000)

    steps = rounds * 4 + 3
    done = 0

    def progress() -> None:
        nonlocal done
        done += 1
        print(f"\rmeasuring... {100 * done // steps:3d}%", end="", file=sys.stderr, flush=True)

    started = time.perf_counter()
    results = run_cases(object_cases(), rounds, budget, progress)
    results += run_cases(block_cases(), rounds, budget, progress)
    results += run_cases(peer_cases(), rounds, budget, progress)
    results += run_cases(gil_cases(), rounds, budget, progress)
    results += thread_results(max(1, rounds // 3), ops, progress)
    results += memory_results(20_000 if args.quick else 10_000_000, progress)
    print(f"\rmeasured in {time.perf_counter() - started:.0f} s" + " " * 10, file=sys.stderr)
    print(
        f"shardpool {__version__} on Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print_table(results, sys.stdout)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "version": __version__,
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "results": [asdict(r) for r in results],
                },
                f,
                indent=2,
            )
    if args.plot:
        try:
            plot(results, args.plot)
        except ImportError:
            print("--plot needs matplotlib (the 'plot' extra)", file=sys.stderr)
            return 2
    return 0
