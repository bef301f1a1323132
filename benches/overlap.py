"""Scaling that a loaded machine does not hide: whether two threads slow
each other down *while both run*, on one shared pool or a pool each.

    python benches/overlap.py                      # 6 trials of each kind
    python benches/overlap.py --trials 12 --kinds checked
    python benches/overlap.py --kinds borrow,borrow-own,checked
    python benches/overlap.py --kinds block,block-own,buffer,buffer-own

On a busy 2-core machine, `benches/scaling.py` measures the scheduler: a
thread waiting for a core neither contends nor makes progress, so the
2-thread figures (and its CPU time per operation) tell nothing about the
pool. Here two threads run short bursts of a kind's statement (2,000 times)
started together by a spin barrier, and only the bursts that both threads
ran the whole time are kept: their spans overlap by at least 95%, and each
burst's CPU time is at least 95% of its wall time (the thread was not
descheduled).

Per trial (a fresh pool, fresh threads): the median ns per operation per
thread over such bursts at 1 thread and at 2 threads, their ratio (1.00:
the threads do not slow each other down), the equivalent speedup
(2 / ratio), how many 2-thread bursts were kept, and, for checked pools,
the objects each thread got (page offset of the address) and the ledger
slot main's rule (bits 4-6, 8 locks) and the current one (top 6 bits of
the address times 2^64/phi, 64 slots on 2 CPUs) give them. The kinds:
``checked`` and ``unchecked`` pools' get+put, ``borrow`` (``with
p.borrow(): pass``), ``block`` (``BlockPool`` get(64 KiB)+release),
``with-block``, ``buffer`` (``BufferPool`` get+write(100 B)+release) and
``closed`` (a method doing no pool work) and ``ref`` (``t = (p,)``: a
new reference to the pool) on a pool both threads share;
each with ``-own``: a pool per thread; ``bytearray`` and ``bytearray64``
(no pool). Meant for a free-threaded build (see docs/free-threading.md).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shardpool import BlockPool, BufferPool, ObjectPool

BURST = 2000
BURSTS = 300
GOLDEN = 0x9E3779B97F4A7C15


def slots(ident: int) -> str:
    new = ((ident * GOLDEN) & (2**64 - 1)) >> 58
    return f"{ident & 0xFFF:03x}:{(ident >> 4) & 7}/{new}"


KIB = 1024


@dataclass(frozen=True)
class Kind:
    """What a kind's threads run: `stmt` over the names `setup()` gives,
    on names shared by both threads, or (`own`) made by each thread."""

    stmt: str
    setup: Callable[[], dict[str, Any]]
    own: bool = False


def _kinds() -> dict[str, Kind]:
    made = {
        "checked": Kind("p.put(p.get())", lambda: {"p": ObjectPool(object)}),
        "unchecked": Kind("p.put(p.get())", lambda: {"p": ObjectPool(object, checked=False)}),
        "borrow": Kind("with p.borrow(): pass", lambda: {"p": ObjectPool(object)}),
        "block": Kind("p.get(n).release()", lambda: {"p": BlockPool(), "n": 64 * KIB}),
        "with-block": Kind("with p.get(n): pass", lambda: {"p": BlockPool(), "n": 64 * KIB}),
        "buffer": Kind(
            "b = p.get(); b.write(d); b.release()",
            lambda: {"p": BufferPool(), "d": b"x" * 100},
        ),
        # A method that does no pool work, on the pool both threads share.
        "closed": Kind("p.closed", lambda: {"p": ObjectPool(object)}),
        # A new reference to the pool (a tuple holding it), as a Borrow takes.
        "ref": Kind("t = (p,)", lambda: {"p": ObjectPool(object)}),
    }
    kinds = dict(made)
    for name, kind in made.items():
        kinds[name + "-own"] = Kind(kind.stmt, kind.setup, own=True)
    kinds["bytearray"] = Kind("f(n)", lambda: {"f": bytearray, "n": 64 * KIB}, own=True)
    kinds["bytearray64"] = Kind("f(n)", lambda: {"f": bytearray, "n": 64}, own=True)
    return kinds


KINDS = _kinds()


def compile_loop(stmt: str, names: dict[str, Any]) -> Callable[..., None]:
    """``run(n, **names)``: `stmt` ``n`` times, its names as locals."""
    params = "".join(f", {k}" for k in names)
    body = "\n".join("        " + line for line in stmt.split("; "))
    src = f"def run(_n{params}):\n    for _ in _repeat(None, _n):\n{body}\n"
    scope: dict[str, Any] = {"_repeat": itertools.repeat}
    exec(compile(src, "<overlap>", "exec"), scope)
    loop: Callable[..., None] = scope["run"]
    return loop


def run(kind: Kind, shared: dict[str, Any], threads: int) -> tuple[list[float], list[set[int]]]:
    """`threads` threads, `BURSTS` bursts each: the ns per operation of the
    kept bursts (every thread's), and, for an object pool, the objects each
    thread got."""
    flags = [0] * threads
    spans: list[list[tuple[float, float, float]]] = [[] for _ in range(threads)]
    seen: list[set[int]] = [set() for _ in range(threads)]

    def work(me: int) -> None:
        names = kind.setup() if kind.own else shared
        loop = compile_loop(kind.stmt, names)
        p = names.get("p")
        pool = p if isinstance(p, ObjectPool) else None
        loop(BURST, **names)
        for burst in range(1, BURSTS + 1):
            flags[me] = burst
            while min(flags) < burst:
                pass
            began, cpu = time.perf_counter(), time.thread_time()
            loop(BURST, **names)
            spans[me].append((began, time.perf_counter(), time.thread_time() - cpu))
            if pool is not None:
                obj = pool.get()
                seen[me].add(id(obj))
                pool.put(obj)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    kept: list[float] = []
    for burst in zip(*spans, strict=True):
        overlap = min(end for _, end, _ in burst) - max(began for began, _, _ in burst)
        longest = max(end - began for began, end, _ in burst)
        ran = all(cpu >= 0.95 * (end - began) for began, end, cpu in burst)
        if overlap >= 0.95 * longest and ran:
            kept.extend((end - began) * 1e9 / BURST for began, end, _ in burst)
    return kept, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument(
        "--kinds",
        default="checked,unchecked",
        help="comma-separated: " + ", ".join(KINDS) + " (-own: a pool per thread)",
    )
    args = parser.parse_args()
    for _ in range(args.trials):
        row = []
        for kind in args.kinds.split(","):
            shared = KINDS[kind].setup()
            one, _ = run(KINDS[kind], shared, 1)
            two, seen = run(KINDS[kind], shared, 2)
            if len(one) < 20 or len(two) < 20:
                row.append(f"{kind}: too few bursts ran alone ({len(one)}, {len(two) // 2})")
                continue
            a, b = statistics.median(one), statistics.median(two)
            objs = " | ".join(",".join(map(slots, sorted(s))) for s in seen)
            row.append(
                f"{kind} {a:5.1f} -> {b:5.1f} ns x{b / a:4.2f} (~{2 * a / b:4.2f}x,"
                f" {len(two) // 2} bursts) {objs if kind == 'checked' else ''}"
            )
        print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
