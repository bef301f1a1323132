"""An ObjectPool of real psycopg connections against a real PostgreSQL server.

The server is the one in ``SHARDPOOL_PG_DSN``: ``bash scripts/check`` starts
a throwaway one on loopback (``scripts/postgres``) and sets it. Without it
these tests skip, saying so; with it, a server that cannot be reached fails.

What is shown, with the pool of ``examples/postgres/postgres_pool.py`` and
today's API: connections the server ends (``pg_terminate_backend``) while
idle are rejected by ``validate`` and replaced; one that breaks while
borrowed is put back (``borrow()`` always returns the object) and rejected
on the next ``get``; under load, with every backend killed again and again,
nothing is lost, no connection has two holders, and the pool serves every
request again once the killing stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shardpool import ObjectPool

from helpers import ROOT, load_module

EXAMPLE = ROOT / "examples" / "postgres" / "postgres_pool.py"
BENCH = ROOT / "benches" / "postgres.py"
DSN = os.environ.get("SHARDPOOL_PG_DSN", "")

needs_server = pytest.mark.skipif(
    not DSN,
    reason="SHARDPOOL_PG_DSN is not set, so there is no PostgreSQL server: bash scripts/check "
    'starts one, or by hand: bash scripts/postgres start && eval "$(bash scripts/postgres env)"',
)


example = load_module("postgres_pool", EXAMPLE)
Connection = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def app() -> str:
    """An application name of this test's own, so that its kills spare the others'
    connections (the suite runs in two processes)."""
    return f"shardpool-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin() -> Iterator[Connection]:
    with psycopg.connect(DSN, autocommit=True) as conn:
        yield conn


def terminate(admin: Connection, app: str) -> int:
    """Ends every backend of the application ``app``; returns how many.

    Each is gone when this returns (the timeout makes pg_terminate_backend
    wait for it), so its goodbye is on the client's socket already: on
    loopback the kernel delivers it at once."""
    row = admin.execute(
        "select coalesce(sum(pg_terminate_backend(pid, 10000)::int), 0)::int"
        " from pg_stat_activity where application_name = %s",
        (app,),
    ).fetchone()
    assert row is not None
    count = row[0]
    assert isinstance(count, int)
    return count


def backends(admin: Connection, app: str) -> int:
    row = admin.execute(
        "select count(*)::int from pg_stat_activity where application_name = %s", (app,)
    ).fetchone()
    assert row is not None
    count = row[0]
    assert isinstance(count, int)
    return count


def until_backends(admin: Connection, app: str, expected: int, seconds: float = 10.0) -> None:
    """Until the server has ``expected`` backends of ``app`` (an ended or closed
    connection's backend takes a moment to go)."""
    deadline = time.monotonic() + seconds
    while (found := backends(admin, app)) != expected:
        assert time.monotonic() < deadline, f"{found} backends of {app}, not {expected}"
        time.sleep(0.01)


def wait_until_told(conn: Connection) -> None:
    """Until the server's goodbye (an error, then EOF) has reached ``conn``'s socket."""
    readable, _, _ = select.select([conn.fileno()], [], [], 10)
    assert readable, "the server did not end the connection within 10 s"


def assert_balanced(pool: ObjectPool[Connection]) -> None:
    s = pool.stats()
    assert s.in_use == 0, s.as_dict()
    assert s.created - s.destroyed == s.idle, s.as_dict()


def test_the_example_explains_a_missing_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHARDPOOL_PG_DSN"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2
    assert "SHARDPOOL_PG_DSN" in done.stderr
    assert "scripts/postgres start" in done.stderr


@needs_server
def test_the_example_runs_in_quick_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "threads: 16 workers, 4 connections" in out
    assert "asyncio: 16 workers, 4 connections" in out
    assert out.count(" 0 failed") == 2, out
    assert out.count("in use 0, most in use 4") == 2, out


@needs_server
def test_the_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "postgres.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| shardpool",
        "| psycopg_pool",
        "| queue.Queue",
    ]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"shardpool", "psycopg_pool", "queue.Queue"}
    for name, result in results.items():
        assert result["requests"] > 0, name
        waits = result["wait_ms"]
        assert 0 <= waits["p50"] <= waits["p99"] <= waits["max"], name
        assert 0 <= result["least_served_thread_share"] <= 1, name


@needs_server
def test_a_connection_ended_while_idle_is_rejected_and_replaced(
    admin: Connection, app: str
) -> None:
    with example.make_pool(DSN, 1, app) as pool:
        with pool.borrow() as first:
            pid = first.info.backend_pid
        assert terminate(admin, app) == 1
        wait_until_told(first)
        assert not first.closed, "nobody has used it since: psycopg does not know yet"
        with pool.borrow() as second:
            assert second is not first
            assert second.info.backend_pid != pid
            assert example.query(second) == 1
        assert first.closed, "destroy closed the rejected connection"
        s = pool.stats()
        assert (s.created, s.destroyed, s.invalid, s.idle) == (2, 1, 1, 1)
        assert_balanced(pool)
        assert backends(admin, app) == 1


@needs_server
def test_a_connection_broken_while_borrowed_is_discarded_and_replaced(
    admin: Connection, app: str
) -> None:
    # discard_on=(psycopg.OperationalError,): the block's error destroys the
    # connection instead of putting it back, and min_size makes its
    # replacement at once, on the thread that ended the block.
    with example.make_pool(DSN, 1, app) as pool:
        held: list[Connection] = []

        def query_after_its_end() -> None:
            with pool.borrow() as conn:
                held.append(conn)
                assert terminate(admin, app) == 1
                wait_until_told(conn)
                example.query(conn)

        with pytest.raises(psycopg.OperationalError) as raised:
            query_after_its_end()
        [broken] = held
        # The block's error came out (the server's "terminating connection due
        # to administrator command"), not one from a cleanup.
        assert isinstance(raised.value, psycopg.errors.AdminShutdown), repr(raised.value)
        assert broken.closed
        s = pool.stats()
        assert (s.discarded, s.destroyed, s.puts) == (1, 1, 0), "discarded, not put back"
        assert (s.created, s.idle, s.in_use) == (2, 1, 0), "replaced at once (min_size)"
        with pool.borrow() as conn:
            assert conn is not broken
            assert example.query(conn) == 1
        assert pool.stats().invalid == 0, "nothing broken was ever handed out again"
        assert_balanced(pool)
        assert backends(admin, app) == 1


class Holders:
    """Which connections are held, to catch one handed to two holders."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: set[int] = set()
        self.twice = 0

    def take(self, conn: Connection) -> None:
        with self.lock:
            if id(conn) in self.held:
                self.twice += 1
            self.held.add(id(conn))

    def give(self, conn: Connection) -> None:
        with self.lock:
            self.held.discard(id(conn))


class Killer:
    """A thread ending every backend of ``app`` every ``interval`` seconds."""

    def __init__(self, app: str, interval: float = 0.02) -> None:
        self.app = app
        self.interval = interval
        self.killed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with psycopg.connect(DSN, autocommit=True) as admin:
            while not self.stop.wait(self.interval):
                self.killed += terminate(admin, self.app)

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def serve_with_threads(
    pool: ObjectPool[Connection], holders: Holders, seconds: float
) -> tuple[int, int]:
    """16 threads borrowing a connection per request; (requests served, failed)."""
    served = [0]
    failed = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        ok = bad = 0
        while time.monotonic() < deadline:
            try:
                with pool.borrow(timeout=30) as conn:
                    holders.take(conn)
                    try:
                        assert example.query(conn) == 1
                        ok += 1
                    finally:
                        holders.give(conn)
            except psycopg.OperationalError:
                bad += 1
        with lock:
            served[0] += ok
            failed[0] += bad

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
        assert not thread.is_alive(), "a worker is stuck"
    return served[0], failed[0]


async def serve_with_tasks(
    pool: ObjectPool[Connection], holders: Holders, seconds: float
) -> tuple[int, int]:
    """16 asyncio tasks borrowing a connection per request; (requests served, failed)."""
    served = failed = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal served, failed
        while time.monotonic() < deadline:
            try:
                async with pool.aborrow(timeout=30) as conn:
                    holders.take(conn)
                    try:
                        assert await asyncio.to_thread(example.query, conn) == 1
                        served += 1
                    finally:
                        holders.give(conn)
            except psycopg.OperationalError:
                failed += 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(16))), seconds + 60)
    return served, failed


def check_recovered(
    pool: ObjectPool[Connection], admin: Connection, app: str, killer: Killer, run: tuple[int, int]
) -> None:
    served, failed = run
    print(f"{killer.killed} backends ended, {served} served, {failed} failed: {pool.stats()}")
    assert killer.killed > 0
    assert served > 0
    # Only a query on a connection ended under it fails: at most one failure
    # per backend ended.
    assert failed <= killer.killed
    s = pool.stats()
    assert s.invalid > 0, "validate rejected no ended connection"
    assert s.created > 4, "no connection was replaced"
    assert s.max_in_use <= 4
    assert_balanced(pool)
    # Every connection the pool let go of was closed: holding all four (which
    # validate picks from the live ones, or makes anew), the server has
    # exactly those four, once the ended backends have gone.
    held = pool.get_many(4, timeout=30)
    try:
        assert len({id(conn) for conn in held}) == 4
        assert all(not conn.closed for conn in held)
        s = pool.stats()
        assert (s.in_use, s.idle, s.created - s.destroyed) == (4, 0, 4), s.as_dict()
        until_backends(admin, app, 4)
    finally:
        pool.put_many(held)


@needs_server
def test_backends_ended_under_load_threads(admin: Connection, app: str) -> None:
    holders = Holders()
    with example.make_pool(DSN, 4, app) as pool:
        with Killer(app) as killer:
            run = serve_with_threads(pool, holders, 2.0)
        check_recovered(pool, admin, app, killer, run)
        # Once the killing stops (and the last goodbyes have arrived), every
        # request is served again: validate weeds out what was ended idle.
        time.sleep(0.5)
        served, failed = serve_with_threads(pool, holders, 0.5)
        assert (served > 0, failed) == (True, 0)
        assert_balanced(pool)
    assert holders.twice == 0, "a connection was handed to two holders"
    until_backends(admin, app, 0)  # every connection closed with the pool


@needs_server
def test_backends_ended_under_load_asyncio(admin: Connection, app: str) -> None:
    holders = Holders()
    with example.make_pool(DSN, 4, app) as pool:
        with Killer(app) as killer:
            run = asyncio.run(serve_with_tasks(pool, holders, 2.0))
        check_recovered(pool, admin, app, killer, run)
        time.sleep(0.5)
        served, failed = asyncio.run(serve_with_tasks(pool, holders, 0.5))
        assert (served > 0, failed) == (True, 0)
        assert_balanced(pool)
    assert holders.twice == 0, "a connection was handed to two holders"
    until_backends(admin, app, 0)  # every connection closed with the pool
