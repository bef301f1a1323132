"""BlockPool get+release beside a fresh bytearray(n), in one run.

    python benches/blocks.py [--quick]

For each size: a fresh ``bytearray(n)`` (allocate, zero, free), the
``BlockPool`` round trip ``pool.get(n).release()``, the same in a ``with``
block, and a bare ``deque`` pop+append pair as the floor of any reuse.
Cases are interleaved over rounds and the best round of each is kept.
"""

from __future__ import annotations

import argparse
import platform
import timeit
from collections import deque
from typing import Any

from shardpool import BlockPool, __version__

SIZES = [64, 4096, 65536, 1 << 20, 16 << 20]


def label(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def measure(rounds: int, budget_s: float) -> dict[tuple[str, int], float]:
    pool = BlockPool()
    d: deque[Any] = deque([object()])
    cases: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for n in SIZES:
        pool.get(n).release()  # warm: one block of each class idle
        cases[("bytearray(n)", n)] = ("bytearray(n)", {"n": n})
        cases[("pool.get(n).release()", n)] = ("get(n).release()", {"get": pool.get, "n": n})
        cases[("with pool.get(n)", n)] = ("with get(n): pass", {"get": pool.get, "n": n})
    cases[("deque pop+append", 0)] = ("d.append(d.pop())", {"d": d})
    timers = {key: timeit.Timer(stmt, globals=ns) for key, (stmt, ns) in cases.items()}
    # Pick a repeat count per case that fits the time budget.
    numbers = {}
    for key, timer in timers.items():
        n, t = timer.autorange()
        numbers[key] = max(1, int(n * budget_s / max(t, 1e-9)))
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(rounds):
        for key, timer in timers.items():
            best[key] = min(best[key], timer.timeit(numbers[key]) / numbers[key] * 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for smoke tests")
    args = parser.parse_args()
    rounds, budget = (2, 0.005) if args.quick else (7, 0.05)
    best = measure(rounds, budget)
    floor = best[("deque pop+append", 0)]
    print(
        f"shardpool {__version__}, Python {platform.python_version()}, {platform.machine()}; "
        f"best of {rounds} rounds; deque pop+append pair {floor:.1f} ns"
    )
    header = f"{'size':>8} {'bytearray(n)':>14} {'get+release':>13} {'with get(n)':>13}"
    print(header + f" {'bytearray / pool':>17} {'pool / deque':>13}")
    for n in SIZES:
        fresh = best[("bytearray(n)", n)]
        pooled = best[("pool.get(n).release()", n)]
        with_ = best[("with pool.get(n)", n)]
        print(
            f"{label(n):>8} {fresh:12.0f}ns {pooled:11.0f}ns {with_:11.0f}ns"
            f" {fresh / pooled:16.1f}x {pooled / floor:12.1f}x"
        )


if __name__ == "__main__":
    main()
