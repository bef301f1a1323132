"""Per-request state that keeps CPython's garbage collector busy, reused through a pool.

    python examples/gc_pressure.py --workload rows            # pooled
    python examples/gc_pressure.py --workload cycles --no-pool
    python examples/gc_pressure.py --workload rows --variant freeze
    python examples/gc_pressure.py --quick                    # a smoke test

Each request is what a web handler builds: a ``Request`` (headers, query)
and a ``Response`` that points back at it, as frameworks link them: a
reference cycle, which reference counting cannot free. Two workloads:

- ``rows``: the handler reads 1,000 rows (one dict each, alive together
  while the response is computed), as a listing page or a report does;
- ``cycles``: the response holds a 256 KiB body (a file, an image, a
  page of data) and few other objects.

CPython's collector starts a young collection when the container objects
allocated minus those freed pass 700. Rows make that happen several times
a request, and every collection traverses the rows alive at the time and
moves them to an older generation, whose collections then cost more. A
cycle keeps everything it reaches (the 256 KiB body too) until a
collection finds it: memory the program no longer uses. The program
also keeps 300,000 long-lived objects, as a real service does (modules,
caches, configuration), which every full collection traverses.

Variants (4 worker threads, the same requests):

- ``unpooled``: new objects per request, as plain code does;
- ``manual``: the same, breaking the cycle by hand at the end of a request;
- ``freeze``: the same as unpooled, after ``gc.freeze()`` of the startup
  heap, so full collections skip it;
- ``threadlocal``: one ``RequestState`` per worker thread, reused in place
  (rows overwritten, not rebuilt; the body buffer kept);
- ``pooled``: the same ``RequestState`` from an ``ObjectPool`` (reset on return).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import threading
import zlib
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from _measure import Measurement, ScenarioResult, parse_args, report, run_tasks

from shardpool import ObjectPool

WORKERS = 4
ROWS = 1_000  # rows workload: rows alive at once in a request
BODY = 256 * 1024  # cycles workload: bytes of a response body
HEAP = 100_000  # long-lived records (3 containers each) kept by the program
SHAPES = 97  # distinct requests, cycled: their expected checksums are computed once
VARIANTS = ["unpooled", "manual", "freeze", "threadlocal", "pooled"]
HEADERS = {
    "host": "api.example.com",
    "user-agent": "shardpool-example/1.0",
    "accept": "application/json",
    "accept-encoding": "gzip",
    "connection": "keep-alive",
}

Row = dict[str, Any]


class Response:
    def __init__(self, request: Request) -> None:
        self.request = request  # the back reference that makes the cycle
        self.status = 200
        self.headers: dict[str, str] = {}
        self.rows: list[Row] = []
        self.body = bytearray()


class Request:
    def __init__(self) -> None:
        self.path = ""
        self.headers: dict[str, str] = {}
        self.query: dict[str, str] = {}
        self.response = Response(self)


class RequestState:
    """A Request and Response made once and reused in place (Resetter protocol).

    Its rows and body keep their size: a request overwrites them instead of
    making new ones. That, not the pool, is what spares the allocations; the
    pool (or a thread-local) is what keeps the state between requests.
    """

    def __init__(self) -> None:
        self.request = Request()

    def reset(self) -> None:
        r = self.request
        r.path = ""
        r.headers.clear()
        r.query.clear()
        r.response.status = 200
        r.response.headers.clear()


def make_heap(seed: int = 3) -> dict[int, dict[str, Any]]:
    """The long-lived part of the program: HEAP records in a cache."""
    rng = random.Random(seed)
    return {
        i: {
            "id": i,
            "name": f"product-{i}",
            "price": round(rng.random() * 500, 2),
            "stock": rng.randrange(100),
            "tags": [f"t{i % 13}", f"t{i % 7}"],
        }
        for i in range(HEAP)
    }


class Handler:
    """Answers request ``i``: fills the request, computes the response, checksums it."""

    def __init__(self, workload: str, heap: dict[int, dict[str, Any]]) -> None:
        self.workload = workload
        self.heap = heap
        self.source = random.Random(5).randbytes(2 * BODY)

    def handle(self, i: int, request: Request, reuse: bool) -> int:
        request.path = f"/items/{i % SHAPES}" if self.workload == "rows" else f"/files/{i % SHAPES}"
        request.headers.update(HEADERS)
        request.query["page"] = str(i % SHAPES)
        response = request.response
        response.headers["content-type"] = "text/csv"
        if self.workload == "rows":
            crc = self._rows(i, response, reuse)
        else:
            crc = self._body(i, response, reuse)
        response.headers["etag"] = f"{crc:08x}"
        return crc

    def _rows(self, i: int, response: Response, reuse: bool) -> int:
        rows, heap = response.rows, self.heap
        first = (i % SHAPES) * ROWS
        if not reuse or not rows:
            rows[:] = [{} for _ in range(ROWS)]
        for k, row in enumerate(rows):
            record = heap[(first + k) % HEAP]
            row["id"] = record["id"]
            row["name"] = record["name"]
            row["price"] = record["price"]
            row["stock"] = record["stock"]
            row["tags"] = record["tags"]  # a list: the row is a container the collector tracks
        crc = 0
        for row in rows:
            line = b"%d,%s,%.2f,%d\n" % (
                row["id"],
                row["name"].encode(),
                row["price"],
                row["stock"],
            )
            crc = zlib.crc32(line, crc)
        return crc

    def _body(self, i: int, response: Response, reuse: bool) -> int:
        if not reuse or len(response.body) != BODY:
            response.body = bytearray(BODY)
        offset = i % SHAPES * 1024
        response.body[:] = memoryview(self.source)[offset : offset + BODY]
        return zlib.crc32(response.body)


def states(variant: str) -> tuple[Callable[[], AbstractContextManager[Request]], Any]:
    """Where a request's objects come from, and the pool if any."""
    if variant in ("unpooled", "freeze", "manual"):
        breaks_cycle = variant == "manual"

        @contextmanager
        def new() -> Generator[Request, None, None]:
            request = Request()
            try:
                yield request
            finally:
                if breaks_cycle:
                    request.response.request = None  # type: ignore[assignment]

        return new, None
    if variant == "threadlocal":
        local = threading.local()

        @contextmanager
        def per_thread() -> Generator[Request, None, None]:
            state: RequestState | None = getattr(local, "state", None)
            if state is None:
                state = local.state = RequestState()
            try:
                yield state.request
            finally:
                state.reset()

        return per_thread, None
    pool = ObjectPool(RequestState, name="requests")

    @contextmanager
    def pooled() -> Generator[Request, None, None]:
        with pool.borrow() as state:
            yield state.request

    return pooled, pool


def run(variant: str, quick: bool, workload: str = "rows") -> ScenarioResult:
    """Answer ``requests`` requests on 4 threads; return the measurements."""
    requests = {"rows": 1_500, "cycles": 6_000}[workload] // (10 if quick else 1)
    measure = Measurement()
    handler = Handler(workload, make_heap())
    expected = [handler.handle(i, Request(), reuse=False) for i in range(SHAPES)]
    # Every variant starts from the same collector state: nothing young, the
    # startup heap counted as long-lived (and, for `freeze`, set aside).
    gc.collect()
    if variant == "freeze":
        gc.freeze()
    request_state, pool = states(variant)
    reuse = variant in ("threadlocal", "pooled")

    def task(i: int) -> int:
        with request_state() as request:
            crc = handler.handle(i, request, reuse)
        if crc != expected[i % SHAPES]:
            raise AssertionError(f"request {i}: checksum {crc:08x}, not {expected[i % SHAPES]:08x}")
        return (i + 1) * crc  # the order shows in the sum

    with measure:
        checksum, latencies = run_tasks(requests, WORKERS, task)
    return measure.result(
        f"gc-{workload}",
        variant,
        "requests",
        requests,
        latencies,
        verified=requests,  # every request raises unless its checksum is the expected one
        checksum=f"{checksum:x}",
        details={
            "latency_of": "one request",
            "frozen_objects": gc.get_freeze_count(),
            "pools": {"requests": pool.stats().as_dict()} if pool else {},
        },
    )


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--workload", choices=["rows", "cycles"], default="rows")

    args = parse_args(__doc__, VARIANTS, argv, options)
    return report(run(args.variant, args.quick, args.workload), args.json)


if __name__ == "__main__":
    sys.exit(main())
