"""Warm get+put round trip of ObjectPool beside its references, in one run.

    python benches/roundtrip.py [--quick]

Every case runs in the same process, interleaved over several rounds, and
the best round of each is reported: the ratio column compares like with
like on a noisy machine. "net" subtracts the cost of the timing loop itself
(an empty statement), so it is the cost of the operation alone.
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections import deque
from collections.abc import Callable
from typing import Any

from shardpool import ObjectPool, __version__


class MinimalPool:
    """The smallest useful pure-Python pool: a deque of idle objects."""

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


def cases() -> dict[str, tuple[str, dict[str, Any], int]]:
    """name -> (statement, namespace, objects per statement)."""
    d: deque[Any] = deque([object()])
    mini = MinimalPool(object)
    plain: ObjectPool[object] = ObjectPool(object)
    checked: ObjectPool[object] = ObjectPool(object, checked=True)
    bounded: ObjectPool[object] = ObjectPool(object, max_size=64)
    batch: ObjectPool[object] = ObjectPool(object, max_idle=64)
    batch.put_many(batch.get_many(64))
    for p in (plain, checked, bounded):
        p.put(p.get())
    mini.put(mini.get())
    return {
        "empty loop (timing overhead)": ("pass", {}, 1),
        "deque pop+append pair": ("d.append(d.pop())", {"d": d}, 1),
        "minimal pure-Python deque pool": ("p.put(p.get())", {"p": mini}, 1),
        "ObjectPool put(get())": ("p.put(p.get())", {"p": plain}, 1),
        "ObjectPool checked=True": ("p.put(p.get())", {"p": checked}, 1),
        "ObjectPool max_size=64": ("p.put(p.get())", {"p": bounded}, 1),
        "ObjectPool with borrow()": ("with p.borrow() as o: pass", {"p": plain}, 1),
        "ObjectPool get_many/put_many(64), per object": (
            "p.put_many(p.get_many(64))",
            {"p": batch},
            64,
        ),
    }


def measure(rounds: int, number: int) -> dict[str, float]:
    """Best ns per object of each case over `rounds` interleaved rounds."""
    table = cases()
    best = dict.fromkeys(table, float("inf"))
    for _ in range(rounds):
        for name, (stmt, ns, per) in table.items():
            n = max(1, number // per)
            t = timeit.Timer(stmt, globals=ns).timeit(n)
            best[name] = min(best[name], t / n / per * 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for smoke tests")
    args = parser.parse_args()
    rounds, number = (3, 20_000) if args.quick else (15, 200_000)
    best = measure(rounds, number)
    overhead = best.pop("empty loop (timing overhead)")
    ref = best["deque pop+append pair"] - overhead
    print(
        f"shardpool {__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, best of {rounds} rounds; loop overhead {overhead:.1f} ns"
    )
    print(f"{'case':48} {'ns/op':>8} {'net ns':>8} {'net / deque pair':>17}")
    for name, ns in best.items():
        per = cases()[name][2]
        net = ns - overhead / per
        print(f"{name:48} {ns:8.1f} {net:8.1f} {net / ref:16.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
