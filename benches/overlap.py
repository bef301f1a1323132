"""Scaling that a loaded machine does not hide: whether two threads on one
shared ObjectPool slow each other down *while both run*.

    python benches/overlap.py                      # 6 trials of each kind
    python benches/overlap.py --trials 12 --kinds checked
    python benches/overlap.py --kinds borrow,borrow-own,checked

On a busy 2-core machine, `benches/scaling.py` measures the scheduler: a
thread waiting for a core neither contends nor makes progress, so the
2-thread figures (and its CPU time per operation) tell nothing about the
pool. Here two threads run short bursts of ``p.put(p.get())`` started
together by a spin barrier, and only the bursts that both threads ran the
whole time are kept: their spans overlap by at least 95%, and each burst's
CPU time is at least 95% of its wall time (the thread was not descheduled).

Per trial (a fresh pool, fresh threads): the median ns per operation per
thread over such bursts at 1 thread and at 2 threads, their ratio (1.00:
the threads do not slow each other down), the equivalent speedup
(2 / ratio), how many 2-thread bursts were kept, and, for checked pools,
the objects each thread got (page offset of the address) and the ledger
slot main's rule (bits 4-6, 8 locks) and the current one (top 6 bits of
the address times 2^64/phi, 64 slots on 2 CPUs) give them. The kinds:
``checked`` and ``unchecked`` pools' get+put, ``borrow`` (``with
p.borrow(): pass`` on a shared pool) and ``borrow-own`` (the same on a
pool per thread). Meant for a free-threaded build (see
docs/free-threading.md).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from shardpool import ObjectPool

BURST = 2000
BURSTS = 300
GOLDEN = 0x9E3779B97F4A7C15


def slots(ident: int) -> str:
    new = ((ident * GOLDEN) & (2**64 - 1)) >> 58
    return f"{ident & 0xFFF:03x}:{(ident >> 4) & 7}/{new}"


def run(
    pool: ObjectPool[object], threads: int, borrow: bool = False, own: bool = False
) -> tuple[list[float], list[set[int]]]:
    """`threads` threads, `BURSTS` bursts each: the ns per operation of the
    kept bursts (every thread's), and the objects each thread got. With
    `borrow`, ``with p.borrow(): pass`` instead of ``p.put(p.get())``; with
    `own`, each thread uses a pool of its own instead of `pool`."""
    flags = [0] * threads
    spans: list[list[tuple[float, float, float]]] = [[] for _ in range(threads)]
    seen: list[set[int]] = [set() for _ in range(threads)]

    def work(me: int) -> None:
        p = ObjectPool(object) if own else pool
        get, put, lend = p.get, p.put, p.borrow
        for _ in range(BURST):
            put(get())
        for burst in range(1, BURSTS + 1):
            flags[me] = burst
            while min(flags) < burst:
                pass
            began, cpu = time.perf_counter(), time.thread_time()
            if borrow:
                for _ in range(BURST):
                    with lend():
                        pass
            else:
                for _ in range(BURST):
                    put(get())
            spans[me].append((began, time.perf_counter(), time.thread_time() - cpu))
            obj = get()
            seen[me].add(id(obj))
            put(obj)

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
        help="checked, unchecked, borrow (a shared pool), borrow-own (a pool per thread)",
    )
    args = parser.parse_args()
    for _ in range(args.trials):
        row = []
        for kind in args.kinds.split(","):
            pool = ObjectPool(object, checked=kind != "unchecked")
            borrow, own = kind.startswith("borrow"), kind == "borrow-own"
            one, _ = run(pool, 1, borrow, own)
            two, seen = run(pool, 2, borrow, own)
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
