"""16 threads share 4 PostgreSQL connections: shardpool, psycopg_pool and a queue.Queue pool.

    python benches/postgres.py                      # 5 rounds of 3 s per pool
    python benches/postgres.py --json docs/data/postgres/postgres.json
    python benches/postgres.py --quick              # a smoke test

The server is the one in ``--dsn``, else in ``SHARDPOOL_PG_DSN`` (``bash
scripts/postgres start`` starts one on loopback and prints its DSN).

The same load through each pool: every thread borrows a connection, runs
``select 1``, gives it back, and again, for the length of a round. Rounds
alternate the pools (each round starts with the next one), so that a drift
of the machine falls on all alike. Measured: requests per second, and the
wait for a connection (from asking to holding), whose percentiles are over
every request of every round; and fairness, the requests of the thread that
made the fewest in a round over the average thread's (the worst round): a
pool that lets a returning thread take its connection straight back serves
most requests at once and starves a few threads, which the percentiles of
all requests hide. Each pool as its users would set it up:

- ``shardpool``: the pool of ``examples/postgres/postgres_pool.py``
  (``max_size=4``, every connection made up front, ``validate`` without a
  round trip, ``reset`` rolling back a transaction left open);
- ``psycopg_pool``: ``ConnectionPool(min_size=4, max_size=4)``, its defaults
  otherwise (no check on getting a connection; a transaction left open is
  rolled back on return, by one of its worker threads);
- ``queue.Queue``: a ``Queue`` filled with 4 connections, ``get()`` and
  ``put()`` around each use, as written by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

import shardpool

ROOT = Path(__file__).resolve().parent.parent
Connection = psycopg.Connection[tuple[object, ...]]
Borrow = Callable[[], AbstractContextManager[Connection]]


def load_example() -> Any:
    path = ROOT / "examples" / "postgres" / "postgres_pool.py"
    spec = importlib.util.spec_from_file_location("postgres_pool", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


example = load_example()
APP = "shardpool-bench"


@contextlib.contextmanager
def shardpool_pool(dsn: str, size: int) -> Iterator[Borrow]:
    pool: shardpool.ObjectPool[Connection] = example.make_pool(dsn, size, APP)
    with pool:
        yield pool.borrow


@contextlib.contextmanager
def psycopg_pool_pool(dsn: str, size: int) -> Iterator[Borrow]:
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": APP}
    with psycopg_pool.ConnectionPool(
        dsn, min_size=size, max_size=size, kwargs=kwargs, open=True
    ) as pool:
        pool.wait(30)
        yield pool.connection


@contextlib.contextmanager
def queue_pool(dsn: str, size: int) -> Iterator[Borrow]:
    idle: queue.Queue[Connection] = queue.Queue()
    for _ in range(size):
        idle.put(example.connect(dsn, APP))

    @contextlib.contextmanager
    def borrow() -> Iterator[Connection]:
        conn = idle.get()
        try:
            yield conn
        finally:
            idle.put(conn)

    try:
        yield borrow
    finally:
        while not idle.empty():
            idle.get().close()


POOLS: dict[str, Callable[[str, int], AbstractContextManager[Borrow]]] = {
    "shardpool": shardpool_pool,
    "psycopg_pool": psycopg_pool_pool,
    "queue.Queue": queue_pool,
}


def run_round(borrow: Borrow, threads: int, seconds: float) -> tuple[float, list[float], list[int]]:
    """Requests per second, every request's wait for a connection (seconds), and
    how many requests each thread made."""
    waits: list[float] = []
    counts: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def worker() -> None:
        mine: list[float] = []
        start.wait()
        clock = time.perf_counter
        while (asked := clock()) < deadline[0]:
            with borrow() as conn:
                mine.append(clock() - asked)
                conn.execute("select 1").fetchone()
        with lock:
            waits.extend(mine)
            counts.append(len(mine))

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for w in workers:
        w.join()
    return len(waits) / (time.perf_counter() - began), waits, counts


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("show server_version").fetchone()
        assert row is not None
        return str(row[0])


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("SHARDPOOL_PG_DSN"), help="the server")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--json", type=Path, help="write the results there")
    parser.add_argument("--quick", action="store_true", help="1 round of 0.3 s")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error(
            "no server: pass --dsn or set SHARDPOOL_PG_DSN "
            "(bash scripts/postgres start starts one and prints its DSN)"
        )
    if args.quick:
        args.rounds, args.seconds = 1, 0.3

    names = list(POOLS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    waits: dict[str, list[float]] = {name: [] for name in names}
    # The least-served thread's requests over the average thread's, per round.
    fairness: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            with POOLS[name](args.dsn, args.connections) as borrow:
                run_round(borrow, args.threads, min(0.2, args.seconds))  # warm up
                rate, round_waits, counts = run_round(borrow, args.threads, args.seconds)
            rates[name].append(rate)
            fairness[name].append(min(counts) / statistics.mean(counts))
            waits[name] += round_waits
            print(f"round {r + 1}: {name:<13} {rate:9,.0f} requests/s", file=sys.stderr)

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        w = sorted(waits[name])
        results[name] = {
            "requests_per_second": statistics.median(rates[name]),
            "requests_per_second_rounds": rates[name],
            "requests": len(w),
            "least_served_thread_share": min(fairness[name]),
            "wait_ms": {
                "p50": percentile(w, 0.50) * 1e3,
                "p99": percentile(w, 0.99) * 1e3,
                "max": w[-1] * 1e3,
            },
        }
    base = results["psycopg_pool"]["requests_per_second"]
    print(
        f"\n{args.threads} threads, {args.connections} connections, `select 1` per borrow; "
        f"{args.rounds} alternated rounds of {args.seconds:g} s per pool\n"
    )
    print("| pool | requests/s | vs psycopg_pool | wait p50 | wait p99 | wait max | fairness |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, res in results.items():
        ms = res["wait_ms"]
        print(
            f"| {name} | {res['requests_per_second']:,.0f} | "
            f"{res['requests_per_second'] / base:.2f}x | {ms['p50']:.2f} ms | "
            f"{ms['p99']:.2f} ms | {ms['max']:.1f} ms | "
            f"{res['least_served_thread_share']:.2f} |"
        )
    print(
        "\nrequests/s: the median of the rounds. fairness: the fewest requests one thread "
        "made in a round, over the average thread's (1: even; 0: a thread starved)."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "load": {
                "threads": args.threads,
                "connections": args.connections,
                "statement": "select 1",
                "rounds": args.rounds,
                "seconds_per_round": args.seconds,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "postgresql": server_version(args.dsn),
                "psycopg": psycopg.__version__,
                "psycopg_pool": psycopg_pool.__version__,
                "commit": git_commit(),
                "date": time.strftime("%Y-%m-%d", time.gmtime()),
                # The machine is shared: what else ran shows here.
                "load_average_1min_at_end": os.getloadavg()[0],
            },
            "results": results,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
