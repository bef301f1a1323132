"""Copy and checksum data through sockets and files with pooled blocks, against fresh buffers.

    python examples/buffer_operations.py             # 4 streams x 12,000 messages, pooled
    python examples/buffer_operations.py --no-pool   # the same program without pools
    python examples/buffer_operations.py --quick     # a few seconds

Four streams each carry length-prefixed messages of 1 KiB to 256 KiB (evenly
spread on a log scale) through a socket pair. A sender thread writes slices
of a source array (``memoryview`` slicing: no copies). A receiver thread
reads each message into a buffer of its size (``recv_into`` through a
``memoryview`` until full), checks it (CRC-32, and a sum over a
``numpy.frombuffer`` view) and appends it to a file. Then every file is
read back in 256 KiB chunks with ``readinto`` and checked again.

Pooled, every buffer is a ``Block`` from a ``BlockPool``; without pools
(``--no-pool``) a ``bytearray`` of the same size. A block is exactly the
size asked for, so the code is the same for both.
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from _measure import Measurement, ScenarioResult, parse_args, report

from shardpool import BlockPool

if TYPE_CHECKING:
    from typing_extensions import Buffer

STREAMS = 4
MIN_SIZE, MAX_SIZE = 1 << 10, 256 << 10
SHAPES = 64  # distinct messages, cycled: their checksums are computed once, up front
CHUNK = 256 << 10  # read-back size
HEADER = struct.Struct("<I")


@dataclass(frozen=True)
class Message:
    """A slice of the source data and what its checksums must be."""

    offset: int
    size: int  # a multiple of 64: every message starts on a word boundary in the file
    crc: int
    word_sum: int


def word_sum(data: memoryview) -> int:
    """The sum of the data's 64-bit words, modulo 2**64, through a zero-copy numpy view."""
    return int(np.frombuffer(data, dtype=np.uint64).sum(dtype=np.uint64))


def make_plan(messages: int, seed: int = 11) -> tuple[bytes, list[Message]]:
    """Source data and ``messages`` messages over it, the same in every run."""
    rng = random.Random(seed)
    source = rng.randbytes(2 * MAX_SIZE)
    view = memoryview(source)
    shapes: list[Message] = []
    for _ in range(SHAPES):
        size = int(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** rng.random()) // 64 * 64
        offset = rng.randrange(len(source) - size)
        chunk = view[offset : offset + size]
        shapes.append(Message(offset, size, zlib.crc32(chunk), word_sum(chunk)))
    return source, [shapes[i % SHAPES] for i in range(messages)]


def recv_exactly(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from the socket, however the bytes arrive."""
    filled = 0
    while filled < len(view):
        n = sock.recv_into(view[filled:])
        if n == 0:
            raise ConnectionError("the sender closed early")
        filled += n


def send_stream(sock: socket.socket, source: bytes, plan: list[Message]) -> None:
    with memoryview(source) as view:
        for m in plan:
            sock.sendall(HEADER.pack(m.size))
            sock.sendall(view[m.offset : m.offset + m.size])
    sock.shutdown(socket.SHUT_WR)


def receive_stream(
    sock: socket.socket,
    plan: list[Message],
    path: Path,
    buffer: Callable[[int], AbstractContextManager[Buffer]],
) -> list[float]:
    """Receive, check and store every message of one stream; return each one's milliseconds."""
    latencies: list[float] = []
    header = bytearray(HEADER.size)
    with open(path, "wb", buffering=0) as out:
        for m in plan:
            recv_exactly(sock, memoryview(header))
            started = time.perf_counter()
            (size,) = HEADER.unpack(header)
            with buffer(size) as buf, memoryview(buf) as view:
                recv_exactly(sock, view)
                if zlib.crc32(view) != m.crc or word_sum(view) != m.word_sum:
                    raise AssertionError(f"message at {m.offset} of {size} bytes corrupted")
                out.write(view)  # an unbuffered file writes straight from the view
            latencies.append((time.perf_counter() - started) * 1e3)
    return latencies


def read_back(
    path: Path, buffer: Callable[[int], AbstractContextManager[Buffer]]
) -> tuple[int, int, int]:
    """(CRC-32, word sum, size) of a file, read in CHUNK pieces with readinto."""
    crc = total = size = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            with buffer(CHUNK) as buf, memoryview(buf) as view:
                n = f.readinto(view)
                if not n:
                    return crc, total, size
                crc = zlib.crc32(view[:n], crc)
                total = (total + word_sum(view[:n])) % 2**64
                size += n


def run(pooled: bool, quick: bool, traced: bool = False) -> ScenarioResult:
    """Move every stream through a socket pair and a file; return the measurements."""
    per_stream = 100 if quick else 12_000
    measure = Measurement(traced)
    source, plan = make_plan(per_stream)
    expected_crc = 0
    for m in plan:
        expected_crc = zlib.crc32(source[m.offset : m.offset + m.size], expected_crc)
    expected_sum = sum(m.word_sum for m in plan) % 2**64
    blocks = BlockPool()
    buffer: Callable[[int], AbstractContextManager[Buffer]]
    buffer = blocks.get if pooled else (lambda n: nullcontext(bytearray(n)))
    pairs = [socket.socketpair() for _ in range(STREAMS)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(STREAMS) as executor:
        paths = [Path(tmp) / f"stream{i}.bin" for i in range(STREAMS)]
        senders = [threading.Thread(target=send_stream, args=(a, source, plan)) for a, _ in pairs]
        with measure:
            for t in senders:
                t.start()
            received = executor.map(
                receive_stream, [b for _, b in pairs], [plan] * STREAMS, paths, [buffer] * STREAMS
            )
            latencies = [ms for stream in received for ms in stream]
            files = list(executor.map(read_back, paths, [buffer] * STREAMS))
        for t in senders:
            t.join()
    for a, b in pairs:
        a.close()
        b.close()
    stream_bytes = sum(m.size for m in plan)
    for crc, total, size in files:
        if (crc, total, size) != (expected_crc, expected_sum, stream_bytes):
            raise AssertionError("a file read back differs from what was written")
    # A plain dict copy: a TypedDict's required key (classes) may not be popped.
    stats = dict(blocks.stats().as_dict())
    stats.pop("classes")  # one row per size class: too much for a report
    return measure.result(
        "buffers",
        "pooled" if pooled else "unpooled",
        "messages",
        len(latencies),
        latencies,
        verified=len(latencies) + len(files),
        checksum=f"{expected_crc:08x}",
        details={
            "latency_of": "receiving, checking and writing one message",
            "mib_per_s": 2 * STREAMS * stream_bytes / 2**20 / measure.seconds,
            "pools": {"blocks": stats} if pooled else {},
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    return report(run(not args.no_pool, args.quick, args.tracemalloc), args.json)


if __name__ == "__main__":
    sys.exit(main())
