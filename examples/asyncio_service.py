"""Thousands of asyncio tasks on one thread sharing costly objects through a bounded pool.

    python examples/asyncio_service.py                     # 1,000 clients, 2,000 uploads
    python examples/asyncio_service.py --variant freelist  # a list of idle Taggers
    python examples/asyncio_service.py --variant queue     # an asyncio.Queue of Taggers
    python examples/asyncio_service.py --no-pool           # a new Tagger per request
    python examples/asyncio_service.py --quick             # a smoke test

A service on one event loop serves 1,000 concurrent clients, each sending
requests one after another. A request is a document uploaded in chunks of
2,000 characters, one every millisecond (the network's pace); the service
counts its words per category as the chunks arrive with a ``Tagger`` from
``object_creation.py``, costly to build and stateful between chunks. So a
request holds its ``Tagger`` across ``await``: one instance per thread
(``threading.local``) cannot serve, since every task runs on the one thread,
and one shared instance behind an ``asyncio.Lock`` would serve one upload at
a time.

Variants:

- ``unpooled``: ``Tagger()`` per request; as many exist as uploads are in progress;
- ``freelist``: a plain list of idle Taggers (``pop()``, or build one if
  empty; ``append()`` after ``reset()``): correct on one thread, with no
  bound, so it grows to the most uploads ever in progress;
- ``queue``: an ``asyncio.Queue`` filled with 64 Taggers up front, a bound
  written by hand (one event loop only);
- ``pooled``: ``ObjectPool(Tagger, max_size=64)`` and ``async with
  pool.aborrow()``: at most 64 exist, a request waits for one without
  blocking the loop, and the pool resets them and counts its use.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from _measure import Measurement, ScenarioResult, parse_args, report
from object_creation import DOCUMENTS, Tagger, chunks, make_documents, tag

from shardpool import ObjectPool

CLIENTS = 1_000
CAP = 64  # Taggers at most, in the bounded variants
CHUNK_INTERVAL = 0.001  # seconds between two chunks of an upload
VARIANTS = ["unpooled", "freelist", "queue", "pooled"]


def taggers(variant: str) -> tuple[Callable[[], AbstractAsyncContextManager[Tagger]], Any]:
    """Where a request gets its Tagger, and what holds them (to count them afterwards)."""
    built: list[int] = [0]

    def build() -> Tagger:
        built[0] += 1
        return Tagger()

    if variant == "unpooled":

        @asynccontextmanager
        async def new() -> AsyncGenerator[Tagger, None]:
            yield build()

        return new, built
    if variant == "freelist":
        idle: list[Tagger] = []

        @asynccontextmanager
        async def from_list() -> AsyncGenerator[Tagger, None]:
            tagger = idle.pop() if idle else build()
            try:
                yield tagger
            finally:
                tagger.reset()
                idle.append(tagger)

        return from_list, built
    if variant == "queue":
        queue: asyncio.Queue[Tagger] = asyncio.Queue()
        for _ in range(CAP):
            queue.put_nowait(build())

        @asynccontextmanager
        async def from_queue() -> AsyncGenerator[Tagger, None]:
            tagger = await queue.get()
            try:
                yield tagger
            finally:
                tagger.reset()
                queue.put_nowait(tagger)

        return from_queue, built
    pool = ObjectPool(build, max_size=CAP, name="taggers")
    return pool.aborrow, pool


async def serve(
    clients: int,
    requests: int,
    docs: list[str],
    expected: list[list[int]],
    tagger: Callable[[], AbstractAsyncContextManager[Tagger]],
) -> tuple[int, list[float], int]:
    """Run ``clients`` clients until ``requests`` are answered; (checksum, latencies, most
    uploads in progress at once)."""
    latencies: list[float] = []
    next_request = 0
    in_progress = most = 0
    checksum = 0

    async def upload(i: int) -> list[int]:
        nonlocal in_progress, most
        async with tagger() as t:
            in_progress += 1
            most = max(most, in_progress)
            try:
                for chunk in chunks(docs[i % DOCUMENTS]):
                    await asyncio.sleep(CHUNK_INTERVAL)  # the next chunk arrives
                    t.feed(chunk)
                return t.result()
            finally:
                in_progress -= 1

    async def client() -> None:
        nonlocal next_request, checksum
        while next_request < requests:
            i = next_request
            next_request += 1
            started = time.perf_counter()
            counts = await upload(i)
            latencies.append((time.perf_counter() - started) * 1e3)
            if counts != expected[i % DOCUMENTS]:
                raise AssertionError(f"request {i} counted {counts}")
            checksum = (checksum + (i + 1) * sum(k * c for k, c in enumerate(counts, 1))) % 2**64

    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client())
    return checksum, latencies, most


def run(variant: str, quick: bool) -> ScenarioResult:
    """Serve ``requests`` uploads from concurrent clients; return the measurements."""
    clients, requests = (100, 400) if quick else (CLIENTS, 2_000)
    measure = Measurement()
    docs = make_documents()
    expected = [tag(text, Tagger()) for text in docs]

    async def main() -> tuple[int, list[float], int, dict[str, Any], int]:
        tagger, holder = taggers(variant)  # inside the loop: asyncio.Queue binds to it
        checksum, latencies, most = await serve(clients, requests, docs, expected, tagger)
        if isinstance(holder, ObjectPool):
            stats = holder.stats().as_dict()
            return checksum, latencies, most, {"taggers": stats}, stats["created"]
        return checksum, latencies, most, {}, holder[0]

    with measure:
        checksum, latencies, most, pools, built = asyncio.run(main())
    return measure.result(
        "asyncio",
        variant,
        "requests",
        len(latencies),
        latencies,
        verified=len(latencies),  # every request raises unless its counts are the expected ones
        checksum=f"{checksum:x}",
        details={
            "latency_of": "one upload, from asking for a Tagger to its result",
            "clients": clients,
            "taggers_built": built,
            "most_uploads_in_progress": most,
            "pools": pools,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, VARIANTS, argv)
    result = run(args.variant, args.quick)
    status = report(result, args.json)
    d = result.details
    print(
        f"Taggers built: {d['taggers_built']:,}; "
        f"uploads in progress at once: {d['most_uploads_in_progress']:,} at most"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
