"""Serialize and parse a large batch of records with pooled output buffers and per-worker codecs.

    python examples/json_processing.py                        # 50,000 records, 2 passes, pooled
    python examples/json_processing.py --variant threadlocal  # a Codec per thread
    python examples/json_processing.py --no-pool              # a new Codec and buffer per page
    python examples/json_processing.py --quick                # a smoke test

A batch of records shaped like an API's rows (ids, strings, numbers, a
list, a nested object) is cut into pages of 100. Four worker threads take
pages and, for each one:

1. serialize it to newline-delimited JSON in an output buffer, a ``Buffer``
   from a ``BufferPool`` (it keeps its capacity between pages);
2. checksum the bytes (CRC-32, as a writer to a file or socket would);
3. parse them back with a ``Codec`` (encoder, decoder and a scratch list)
   from an ``ObjectPool``, and check the records came back equal.

Without pools (``--no-pool``) each page gets a new ``bytearray`` and a new
``Codec``; with ``--variant threadlocal`` a new ``bytearray`` and its
thread's ``Codec`` (``threading.local``); nothing else changes.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import zlib
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, Self

from _measure import Measurement, ScenarioResult, parse_args, report, run_tasks

from shardpool import BufferPool, ObjectPool

if TYPE_CHECKING:
    from typing_extensions import Buffer

PAGE = 100  # records per page: a typical API page or write batch
WORKERS = 4
VARIANTS = ["unpooled", "threadlocal", "pooled"]

Record = dict[str, Any]


class Output(Protocol):
    """What a page is serialized into: a pooled ``Buffer`` or a ``bytearray``."""

    def __iadd__(self, data: Buffer, /) -> Self: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __len__(self) -> int: ...


class Codec:
    """Per-worker JSON state: an encoder, a decoder and a scratch list (Resetter protocol)."""

    def __init__(self) -> None:
        self.encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
        self.decoder = json.JSONDecoder()
        self.parsed: list[Record] = []

    def reset(self) -> None:
        self.parsed.clear()


def make_records(n: int, seed: int = 7) -> list[Record]:
    """``n`` records, the same in every run."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "ünïcödé"]
    return [
        {
            "id": i,
            "name": f"{rng.choice(words)} {rng.choice(words)} {i}",
            "email": f"user{i}@example.com",
            "score": round(rng.random() * 100, 3),
            "active": rng.random() < 0.8,
            "tags": rng.sample(words, 3),
            "address": {"city": rng.choice(words).title(), "zip": f"{rng.randrange(10**5):05d}"},
            "balance": rng.randrange(-(10**6), 10**6),
        }
        for i in range(n)
    ]


class Resources:
    """Where a page's buffer and codec come from: the only difference between the variants."""

    output: Callable[[], AbstractContextManager[Output]]
    codec: Callable[[], AbstractContextManager[Codec]]

    def __init__(self, variant: str) -> None:
        self.pools: dict[str, Any] = {}
        if variant == "pooled":
            buffers, codecs = BufferPool(name="pages"), ObjectPool(Codec, name="codecs")
            self.pools = {"buffers": buffers, "codecs": codecs}
            self.output, self.codec = buffers.get, codecs.borrow
            return
        self.output = lambda: nullcontext(bytearray())
        if variant == "unpooled":
            self.codec = lambda: nullcontext(Codec())
            return
        local = threading.local()

        @contextmanager
        def per_thread() -> Generator[Codec, None, None]:
            codec: Codec | None = getattr(local, "codec", None)
            if codec is None:
                codec = local.codec = Codec()
            try:
                yield codec
            finally:
                codec.reset()

        self.codec = per_thread


def process_page(page: list[Record], res: Resources) -> int:
    """Serialize, checksum, parse back and compare one page; return its CRC-32."""
    with res.output() as out, res.codec() as codec:
        for record in page:
            out += codec.encoder.encode(record).encode()
            out += b"\n"
        crc = zlib.crc32(out)
        with memoryview(out) as view:  # released before the buffer goes back to its pool
            text = str(view, "utf-8")
        codec.parsed.extend(map(codec.decoder.decode, text.splitlines()))
        if codec.parsed != page:
            raise AssertionError(f"page starting at record {page[0]['id']} came back different")
    return crc


def run(variant: str, quick: bool) -> ScenarioResult:
    """Process every page ``passes`` times on a thread pool; return the measurements."""
    count, passes = (4_000, 1) if quick else (50_000, 2)
    measure = Measurement()
    records = make_records(count)
    pages = [records[i : i + PAGE] for i in range(0, count, PAGE)]
    res = Resources(variant)

    def task(i: int) -> int:
        return (i + 1) * process_page(pages[i % len(pages)], res)  # the order shows in the sum

    with measure:
        checksum, latencies = run_tasks(len(pages) * passes, WORKERS, task)
    return measure.result(
        "json",
        variant,
        "records",
        count * passes,
        latencies,
        verified=count * passes,  # process_page raises unless every record round-trips
        checksum=f"{checksum:x}",
        details={
            "latency_of": f"one page of {PAGE} records",
            "json_bytes_per_record": len(json.dumps(pages[0], separators=(",", ":"))) / PAGE,
            "pools": {name: pool.stats().as_dict() for name, pool in res.pools.items()},
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, VARIANTS, argv)
    return report(run(args.variant, args.quick), args.json)


if __name__ == "__main__":
    sys.exit(main())
