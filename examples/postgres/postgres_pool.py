"""Threads, or asyncio tasks, sharing a few PostgreSQL connections through an ObjectPool.

    python examples/postgres/postgres_pool.py                # 16 threads, 4 connections, 5 s
    python examples/postgres/postgres_pool.py --asyncio      # 16 tasks on one event loop
    python examples/postgres/postgres_pool.py --quick        # a smoke test (both, briefly)
    python examples/postgres/postgres_pool.py --dsn postgresql://user@host:5432/db

The server is the one in ``--dsn``, else in ``SHARDPOOL_PG_DSN``; ``bash
scripts/postgres start`` starts a throwaway one on loopback and prints its
DSN (``eval "$(bash scripts/postgres env)"`` sets the variable).

Each worker borrows a connection, runs ``select 1``, and gives it back; the
pool holds at most ``--connections`` connections, so the other workers wait
(without holding the GIL, or without blocking the event loop). What the pool
is told about connections:

- ``validate=is_usable``: before an idle connection is handed out, a cheap
  check with no round trip to the server: not closed, no transaction left
  open, and nothing unasked-for waiting on its socket (a server that ends a
  connection, by ``pg_terminate_backend`` or a restart, sends an error and
  closes it). A rejected connection is destroyed and another one tried or
  made, in place of the one lost;
- ``reset=rollback``: a connection comes back with no transaction open;
- ``destroy=close``: a connection the pool lets go of is closed.

- ``discard_on=(psycopg.OperationalError,)``: a connection that breaks
  *while borrowed* (the server ended it during the query) is destroyed when
  the ``borrow()`` block ends with that error, instead of going back: its
  slot is freed at once and the one request sees the error;
- ``min_size`` keeps the connections open (the pool makes a replacement for
  each one it destroys), ``max_lifetime`` recycles them after an hour, and
  ``timeout=30.0`` is the wait a ``borrow()`` that names none gets (the
  default of a bounded pool, spelt out).

The asyncio variant keeps the same pool of ordinary (synchronous) psycopg
connections: a task waits for one with ``async with pool.aborrow()``, which
never blocks the loop, and runs its query in a worker thread
(``asyncio.to_thread``). The pool's hooks run in the thread that calls it,
here the loop's: the connections are made up front (``min_size``), and a
replacement for a rejected one is made on the loop, a few milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import psycopg
from psycopg.pq import TransactionStatus

from shardpool import ObjectPool

Connection = psycopg.Connection[tuple[object, ...]]

DSN_VARIABLE = "SHARDPOOL_PG_DSN"
APPLICATION_NAME = "shardpool-example"


def connect(dsn: str, application_name: str = APPLICATION_NAME) -> Connection:
    """A new connection in autocommit mode: each statement is its own transaction."""
    return psycopg.connect(dsn, autocommit=True, application_name=application_name)


def is_usable(conn: Connection) -> bool:
    """``validate``: whether an idle connection can be handed out, without a round trip.

    Costs a ``select()`` system call (about a microsecond). It cannot see a
    server that vanished without a word (a pulled cable): the next query
    finds that out, and the connection is rejected on the ``get`` after.
    """
    if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    # An idle connection is sent nothing unasked unless it LISTENs (this one
    # does not): something to read means the server has ended it.
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return not readable


def rollback(conn: Connection) -> None:
    """``reset``: end a transaction left open. A broken connection is left as it is
    (its ``rollback`` would raise and replace the error the block raised);
    ``is_usable`` rejects it on the next ``get``."""
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    # If it breaks meanwhile, it is closed now, so rejected on the next get.
    with contextlib.suppress(psycopg.OperationalError):
        conn.rollback()


def close(conn: Connection) -> None:
    """``destroy``: close the connection (nothing happens if it is closed already)."""
    conn.close()


def make_pool(
    dsn: str, connections: int = 4, application_name: str = APPLICATION_NAME
) -> ObjectPool[Connection]:
    """The pool of this example, every connection made up front."""
    return ObjectPool(
        partial(connect, dsn, application_name),
        max_size=connections,
        # Made at construction, and replaced by the pool whenever it destroys
        # one (rejected, discarded, recycled), on the thread that destroyed it.
        min_size=connections,
        validate=is_usable,
        reset=rollback,
        destroy=close,
        # A connection that broke inside borrow() is destroyed, not put back.
        discard_on=(psycopg.OperationalError,),
        # Recycle connections after an hour (psycopg_pool's default).
        max_lifetime=3600.0,
        # The wait of a borrow() that names none (psycopg_pool's default).
        timeout=30.0,
        name="postgres",
    )


def query(conn: Connection) -> int:
    """One request's work."""
    row = conn.execute("select 1").fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, int)
    return value


@dataclass
class Load:
    """What the workers did: waits (seconds) for a connection, and failed requests."""

    waits: list[float] = field(default_factory=list[float])
    failures: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.waits)

    def summary(self) -> str:
        waits = sorted(self.waits)
        p50 = statistics.median(waits) if waits else 0.0
        p99 = waits[int(0.99 * (len(waits) - 1))] if waits else 0.0
        worst = waits[-1] if waits else 0.0
        return (
            f"{self.requests:,} requests in {self.seconds:.1f} s "
            f"({self.requests / self.seconds:,.0f}/s), {self.failures} failed; wait for a "
            f"connection: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, max {worst * 1e3:.1f} ms"
        )


def run_threads(pool: ObjectPool[Connection], workers: int, seconds: float) -> Load:
    """``workers`` threads, each borrowing a connection per request for ``seconds``."""
    load = Load()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        waits: list[float] = []
        failures = 0
        while (asked := time.perf_counter()) < deadline:
            try:
                with pool.borrow() as conn:
                    waits.append(time.perf_counter() - asked)
                    query(conn)
            except psycopg.OperationalError:
                failures += 1  # the connection broke during the query; see the docstring
        with lock:
            load.waits += waits
            load.failures += failures

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - started
    return load


async def run_tasks(pool: ObjectPool[Connection], workers: int, seconds: float) -> Load:
    """``workers`` asyncio tasks, each borrowing a connection per request for ``seconds``."""
    load = Load()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while (asked := time.perf_counter()) < deadline:
            try:
                async with pool.aborrow() as conn:
                    load.waits.append(time.perf_counter() - asked)
                    await asyncio.to_thread(query, conn)
            except psycopg.OperationalError:
                load.failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    load.seconds = time.perf_counter() - started
    return load


def check_balance(pool: ObjectPool[Connection]) -> str:
    """The pool's account once every worker is done: every connection made is
    either closed or idle in the pool, and none is still out."""
    s = pool.stats()
    line = (
        f"pool: created {s.created}, destroyed {s.destroyed} ({s.invalid} rejected by "
        f"validate), idle {s.idle}, in use {s.in_use}, most in use {s.max_in_use}"
    )
    if s.in_use != 0 or s.created - s.destroyed != s.idle:
        raise SystemExit(f"the pool lost track of a connection: {line}")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(DSN_VARIABLE), help="the server")
    parser.add_argument("--threads", type=int, default=16, help="workers (default 16)")
    parser.add_argument("--connections", type=int, default=4, help="pool size (default 4)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration (default 5)")
    parser.add_argument("--asyncio", action="store_true", help="tasks on an event loop")
    parser.add_argument("--quick", action="store_true", help="a smoke test: both, 0.5 s each")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error(
            f"no server: pass --dsn or set {DSN_VARIABLE} "
            "(bash scripts/postgres start starts one and prints its DSN)"
        )

    runs: list[tuple[str, Callable[[ObjectPool[Connection]], Load]]] = []
    seconds = 0.5 if args.quick else args.seconds
    if args.quick or not args.asyncio:
        runs.append(("threads", lambda p: run_threads(p, args.threads, seconds)))
    if args.quick or args.asyncio:
        runs.append(("asyncio", lambda p: asyncio.run(run_tasks(p, args.threads, seconds))))
    for label, run in runs:
        with make_pool(args.dsn, args.connections) as pool:
            load = run(pool)
            print(f"{label}: {args.threads} workers, {args.connections} connections")
            print(f"  {load.summary()}")
            print(f"  {check_balance(pool)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
