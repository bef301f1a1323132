"""Large messages received by one thread and processed by another, in pooled blocks.

    python examples/buffer_operations.py                      # 2 streams x 400 messages, pooled
    python examples/buffer_operations.py --variant ring       # per-stream reused buffers
    python examples/buffer_operations.py --no-pool            # a new bytearray per message
    python examples/buffer_operations.py --mmap-threshold 131072   # as allocators that mmap
    python examples/buffer_operations.py --quick              # a smoke test

Two streams each carry length-prefixed messages of 256 KiB to 4 MiB
(evenly spread on a log scale) through a socket pair. On each stream a
sender thread writes slices of a source array (no copies); a receiver
thread reads each message into a buffer of its size (``recv_into`` until
full) and hands the buffer to a worker thread through a queue (at most 2
waiting); the worker checks it (CRC-32 and a sum over a
``numpy.frombuffer`` view) and is done with it. A buffer is filled in one
thread and let go in another, so one buffer per thread cannot serve.

Variants:

- ``unpooled``: ``bytearray(n)`` per message;
- ``ring``: what a careful program does without a library: per stream, 4
  buffers of the largest size, sent back by the worker through a second
  queue for the receiver to fill again;
- ``pooled``: a ``Block`` of ``n`` bytes from one ``BlockPool`` shared by the
  streams, released by the worker.

glibc serves allocations above its mmap threshold (128 KiB at first) with
fresh pages from the kernel, but raises the threshold to the size of any
such block freed, up to 32 MiB, so after warming up it recycles large
blocks like small ones. ``--mmap-threshold N`` fixes the threshold
(``mallopt(M_MMAP_THRESHOLD)``), as allocators that always map large
blocks do (musl's, for one): every large ``bytearray`` then costs a
``mmap``, a page fault per 4 KiB touched and a ``munmap``.
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import random
import socket
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from queue import Queue, SimpleQueue
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np
from _measure import Measurement, ScenarioResult, parse_args, report

from shardpool import Block, BlockPool

if TYPE_CHECKING:
    from typing_extensions import Buffer

STREAMS = 2
MIN_SIZE, MAX_SIZE = 256 << 10, 4 << 20
SHAPES = 64  # distinct messages, cycled: their checksums are computed once, up front
DEPTH = 2  # filled buffers waiting for the worker, per stream
RING = DEPTH + 2  # the ring's buffers: waiting, being checked, being filled, one spare
HEADER = struct.Struct("<I")
VARIANTS = ["unpooled", "ring", "pooled"]
M_MMAP_THRESHOLD = -3  # glibc's malloc.h


@dataclass(frozen=True)
class Message:
    """A slice of the source data and what its checksums must be."""

    offset: int
    size: int  # a multiple of 64: every message is a whole number of 64-bit words
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
        offset = rng.randrange(len(source) - size) // 8 * 8
        chunk = view[offset : offset + size]
        shapes.append(Message(offset, size, zlib.crc32(chunk), word_sum(chunk)))
    return source, [shapes[i % SHAPES] for i in range(messages)]


def fix_mmap_threshold(nbytes: int) -> None:
    """Make glibc's malloc map every block of ``nbytes`` or more from the kernel, always."""
    if platform.libc_ver()[0] != "glibc":
        raise SystemExit("--mmap-threshold needs glibc (it calls mallopt)")
    if not ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, nbytes):
        raise SystemExit(f"mallopt(M_MMAP_THRESHOLD, {nbytes}) failed")


class Buffers(Protocol):
    """Where a stream's receiver gets a buffer and its worker lets it go."""

    def take(self, size: int) -> Buffer: ...
    def give_back(self, buffer: Buffer) -> None: ...


class Fresh:
    """A new ``bytearray`` per message; the worker drops it."""

    def take(self, size: int) -> Buffer:
        return bytearray(size)

    def give_back(self, buffer: Buffer) -> None:
        pass


class Ring:
    """Per stream, RING buffers of the largest size, sent back by the worker (no library)."""

    def __init__(self) -> None:
        self.free: SimpleQueue[bytearray] = SimpleQueue()
        for _ in range(RING):
            self.free.put(bytearray(MAX_SIZE))

    def take(self, size: int) -> Buffer:
        return memoryview(self.free.get())[:size]  # waits while the worker holds them all

    def give_back(self, buffer: Buffer) -> None:
        assert isinstance(buffer, memoryview)
        assert isinstance(buffer.obj, bytearray)
        self.free.put(buffer.obj)


class Pooled:
    """A ``Block`` of exactly ``size`` bytes from a ``BlockPool`` shared by every stream."""

    def __init__(self, pool: BlockPool) -> None:
        self.pool = pool

    def take(self, size: int) -> Buffer:
        return self.pool.get(size)

    def give_back(self, buffer: Buffer) -> None:
        assert isinstance(buffer, Block)
        buffer.release()


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


Handoff: TypeAlias = "Queue[tuple[Buffer, Message, float] | None]"


def receive_stream(
    sock: socket.socket, plan: list[Message], buffers: Buffers, out: Handoff
) -> None:
    """Read every message of one stream into a buffer and hand it to the worker."""
    header = bytearray(HEADER.size)
    for m in plan:
        recv_exactly(sock, memoryview(header))
        started = time.perf_counter()
        (size,) = HEADER.unpack(header)
        buffer = buffers.take(size)
        with memoryview(buffer) as view:  # released before another thread gets the buffer
            recv_exactly(sock, view)
        out.put((buffer, m, started))
    out.put(None)


def check_stream(buffers: Buffers, work: Handoff, latencies: list[float]) -> int:
    """Check every message handed over and let its buffer go; return the bytes checked."""
    checked = 0
    while (item := work.get()) is not None:
        buffer, m, started = item
        with memoryview(buffer) as view:
            if zlib.crc32(view) != m.crc or word_sum(view) != m.word_sum:
                raise AssertionError(f"message at {m.offset} of {m.size} bytes corrupted")
            checked += len(view)
        buffers.give_back(buffer)
        del buffer, item  # a block may keep its memory until its last reference goes
        latencies.append((time.perf_counter() - started) * 1e3)
    return checked


def run(variant: str, quick: bool, mmap_threshold: int | None = None) -> ScenarioResult:
    """Move every stream through a socket pair and a hand-off queue; return the measurements."""
    per_stream = 40 if quick else 400
    if mmap_threshold is not None:
        fix_mmap_threshold(mmap_threshold)
    measure = Measurement()
    source, plan = make_plan(per_stream)
    pool = BlockPool(name="messages") if variant == "pooled" else None
    streams: list[Buffers] = []
    for _ in range(STREAMS):
        if pool is not None:
            streams.append(Pooled(pool))
        else:
            streams.append(Ring() if variant == "ring" else Fresh())
    pairs = [socket.socketpair() for _ in range(STREAMS)]
    queues: list[Handoff] = [Queue(DEPTH) for _ in range(STREAMS)]
    latencies: list[list[float]] = [[] for _ in range(STREAMS)]
    checked = [0] * STREAMS
    errors: list[BaseException] = []

    def guarded(i: int, role: str) -> None:
        try:
            if role == "send":
                send_stream(pairs[i][0], source, plan)
            elif role == "receive":
                receive_stream(pairs[i][1], plan, streams[i], queues[i])
            else:
                checked[i] = check_stream(streams[i], queues[i], latencies[i])
        except BaseException as e:  # stop the stream's other threads, and report it
            errors.append(e)
            for sock in pairs[i]:
                sock.shutdown(socket.SHUT_RDWR)
            if role == "check":
                while queues[i].get() is not None:
                    pass
            elif role == "receive":
                queues[i].put(None)

    threads = [
        threading.Thread(target=guarded, args=(i, role), name=f"{role}-{i}")
        for i in range(STREAMS)
        for role in ("send", "receive", "check")
    ]
    with measure:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for a, b in pairs:
        a.close()
        b.close()
    if errors:
        raise errors[0]
    stream_bytes = sum(m.size for m in plan)
    if checked != [stream_bytes] * STREAMS:
        raise AssertionError(f"checked {checked} bytes, not {stream_bytes} per stream")
    samples = [ms for stream in latencies for ms in stream]
    details: dict[str, object] = {
        "latency_of": "one message, from its first byte to the end of its check",
        "mib_per_s": STREAMS * stream_bytes / 2**20 / measure.seconds,
        "mmap_threshold": mmap_threshold,
        "pools": {},
    }
    if pool is not None:
        stats = dict(pool.stats().as_dict())  # a plain dict: one key is dropped
        stats.pop("classes")  # one row per size class: too much for a report
        details["pools"] = {"messages": stats}
    return measure.result(
        "buffers" if mmap_threshold is None else "buffers-mmap",
        variant,
        "messages",
        len(samples),
        samples,
        verified=len(samples),  # every message raises unless both its checksums are right
        checksum=f"{zlib.crc32(struct.pack(f'<{len(plan)}I', *(m.crc for m in plan))):08x}",
        details=details,
    )


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--mmap-threshold",
            type=int,
            metavar="BYTES",
            help="fix glibc's mmap threshold (e.g. 131072) before the run",
        )

    args = parse_args(__doc__, VARIANTS, argv, options)
    return report(run(args.variant, args.quick, args.mmap_threshold), args.json)


if __name__ == "__main__":
    sys.exit(main())
