"""BlockPool and Block: size classes, aligned zero-copy memory through the buffer
protocol, idle bounds, zeroing, release safety (views, deferred release, garbage
collection), closing, stats, and every error path. Threads:
test_block_threads.py."""

from __future__ import annotations

import bisect
import ctypes
import gc
import hashlib
import io
import itertools
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardpool
from shardpool import Block, BlockClassStats, BlockPool, BlockPoolStats, PoolClosed

from helpers import address, snapshot

KIB = 1 << 10
MIB = 1 << 20
DEFAULT_MAX_BLOCK = 16 * MIB
DEFAULT_MAX_IDLE_BYTES = 64 * MIB

TOTAL_FIELDS = (
    "bytes_idle",
    "bytes_in_use",
    "max_idle_bytes",
    "in_use",
    "idle",
    "hits",
    "misses",
    "puts",
    "created",
    "destroyed",
    "dropped",
    "expired",
    "oversize",
)
CLASS_FIELDS = (
    "size",
    "max_idle",
    "idle",
    "in_use",
    "hits",
    "misses",
    "puts",
    "dropped",
    "expired",
)


def fill(block: Block, byte: int) -> None:
    view = np.frombuffer(block, dtype=np.uint8)
    view[:] = byte
    del view


def holds_only(block: Block, byte: int) -> bool:
    return bytes(block) == bytes([byte]) * len(block)


def smallest_class(pool: BlockPool, n: int) -> int:
    classes = pool.classes
    return classes[bisect.bisect_left(classes, n)]


def row(pool: BlockPool, size: int) -> BlockClassStats:
    rows = [c for c in pool.stats().classes if c.size == size]
    assert len(rows) == 1, f"no stats row for class {size}"
    return rows[0]


@pytest.fixture
def used_pool():
    """A pool with history: a block held, blocks idle in two classes, counters set."""
    pool = BlockPool(classes=[(256, 8), (4096, 8)], shards=1)
    held = pool.get(100)
    for n in (200, 3000, 3000):
        pool.get(n).release()
    pool.get(70_000).release()  # oversize
    yield pool
    if not held.released:
        held.release()


# --- package surface ---


def test_package_exports_the_block_names():
    for name in ("BlockPool", "Block", "BlockPoolStats", "BlockClassStats", "PoolClosed"):
        assert name in shardpool.__all__
        assert getattr(shardpool, name) is not None
    assert issubclass(PoolClosed, RuntimeError)


def test_help_documents_the_pool_and_its_arguments(capsys):
    help(BlockPool)
    text = capsys.readouterr().out
    for word in (
        "classes",
        "max_block",
        "max_idle_bytes",
        "zero",
        "alignment",
        "idle_timeout",
        "shards",
    ):
        assert word in text, word
    for method in ("get", "put", "stats", "trim", "clear", "close"):
        doc = getattr(BlockPool, method).__doc__
        assert doc, method
        assert len(doc.strip()) > 20, method
    assert "buffer protocol" in (Block.__doc__ or "")
    assert Block.release.__doc__


def test_defaults():
    pool = BlockPool()
    assert pool.classes[0] == 64
    assert pool.classes[-1] == pool.max_block == DEFAULT_MAX_BLOCK
    assert pool.max_idle_bytes == DEFAULT_MAX_IDLE_BYTES
    assert pool.alignment == 64
    assert pool.zero == "never"
    assert pool.closed is False
    assert len(pool) == 0
    s = pool.stats()
    assert isinstance(s, BlockPoolStats)
    assert s.classes == ()
    assert s.max_idle_bytes == DEFAULT_MAX_IDLE_BYTES
    assert all(getattr(s, f) == 0 for f in TOTAL_FIELDS if f != "max_idle_bytes")


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        BlockPool([4096])
    pool = BlockPool()
    with pytest.raises(TypeError):
        pool.get(10, True)
    with pytest.raises(TypeError):
        pool.get(n=10)
    with pytest.raises(TypeError):
        pool.get()
    block = pool.get(10)
    with pytest.raises(TypeError):
        pool.put(block=block)
    block.release()


# --- getting blocks ---


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 100, 1000, 4096, 65536, 1_000_000])
def test_get_gives_exactly_n_usable_bytes_from_the_smallest_fitting_class(n):
    pool = BlockPool()
    block = pool.get(n)
    assert isinstance(block, Block)
    assert len(block) == n
    assert block.capacity == smallest_class(pool, n)
    assert block.capacity >= max(n, 64)
    assert len(bytes(block)) == n
    assert memoryview(block).nbytes == n
    assert block.released is False
    assert repr(block) == f"<Block len={n} capacity={block.capacity}>"
    block.release()
    assert block.released is True
    assert repr(block) == f"<Block released capacity={block.capacity}>"


def test_new_memory_is_zero():
    pool = BlockPool()
    blocks = [pool.get(n) for n in (1, 100, 5000, 300_000, DEFAULT_MAX_BLOCK + 1)]
    for block in blocks:
        assert holds_only(block, 0)
        block.release()


def test_with_releases_on_exit():
    pool = BlockPool()
    with pool.get(65536) as block:
        assert len(block) == 65536
        assert pool.stats().bytes_in_use == 65536
    assert block.released
    s = pool.stats()
    assert (s.puts, s.bytes_in_use, s.bytes_idle) == (1, 0, 65536)


def test_with_releases_on_exception_and_lets_it_propagate():
    pool = BlockPool()
    with pytest.raises(KeyError, match="boom"), pool.get(100) as block:
        raise KeyError("boom")
    assert block.released
    s = pool.stats()
    assert (s.puts, s.bytes_in_use, s.bytes_idle) == (1, 0, 112)


def test_enter_returns_the_block_itself():
    pool = BlockPool()
    block = pool.get(10)
    with block as entered:
        assert entered is block
    assert block.released


def test_release_and_put_both_give_the_block_back():
    pool = BlockPool(shards=1)
    a = pool.get(1000)
    b = pool.get(1000)
    a.release()
    pool.put(b)
    assert a.released
    assert b.released
    s = pool.stats()
    assert (s.puts, s.bytes_idle, s.bytes_in_use, len(pool)) == (2, 2048, 0, 2)


def test_release_inside_with_is_not_repeated_on_exit():
    pool = BlockPool()
    with pool.get(100) as block:
        block.release()
    assert pool.stats().puts == 1
    assert len(pool) == 1


def test_released_block_is_reused_from_its_class():
    pool = BlockPool(shards=1)
    block = pool.get(5000)
    assert block.capacity == 5120
    where = address(block)
    block.release()
    del block  # exported: the memory comes back with the Block object
    again = pool.get(4500)  # same class
    assert again.capacity == 5120
    assert address(again) == where
    s = pool.stats()
    assert (s.hits, s.misses, s.created) == (1, 1, 1)
    assert s.hit_rate == 0.5
    again.release()


def test_a_block_is_filed_by_its_capacity_not_its_length():
    pool = BlockPool(classes=[4096, 65536], shards=1)
    small = pool.get(10)
    assert small.capacity == 4096
    small.release()
    assert row(pool, 4096).idle == 1
    block = pool.get(4096)  # the idle 4096-byte block serves it
    assert row(pool, 4096).hits == 1
    block.release()


# --- the buffer protocol ---


def test_memoryview_is_writable_contiguous_bytes():
    pool = BlockPool()
    with pool.get(1000) as block:
        view = memoryview(block)
        assert not view.readonly
        assert view.format == "B"
        assert view.itemsize == 1
        assert view.nbytes == len(view) == 1000
        assert view.c_contiguous
        assert view.obj is block
        view[:5] = b"hello"
        assert bytes(block)[:5] == b"hello"
        assert view.cast("I").nbytes == 1000
        view.release()


def test_numpy_and_memoryview_share_the_memory():
    pool = BlockPool()
    with pool.get(4096) as block:
        arr = np.frombuffer(block, dtype=np.uint8)
        view = memoryview(block)
        assert arr.flags.writeable
        assert arr.size == 4096
        arr[10] = 42
        assert view[10] == 42
        view[20] = 7
        assert arr[20] == 7
        assert bytes(block)[10] == 42
        assert np.frombuffer(block, dtype=np.uint8).ctypes.data == arr.ctypes.data
        floats = np.frombuffer(block, dtype=np.float64)
        floats[0] = 1.5
        assert struct.unpack_from("<d", block, 0)[0] == 1.5
        del arr, floats
        view.release()


def test_bytes_bytearray_and_struct():
    pool = BlockPool()
    with pool.get(8) as block:
        struct.pack_into("<Q", block, 0, 0x0102030405060708)
        assert bytes(block) == bytes(range(8, 0, -1))
        assert bytearray(block) == bytearray(range(8, 0, -1))
        assert struct.unpack_from("<Q", block)[0] == 0x0102030405060708


def test_hashlib_and_zlib_read_the_block():
    pool = BlockPool()
    data = bytes(range(256)) * 40
    with pool.get(len(data)) as block:
        memoryview(block)[:] = data
        assert hashlib.sha256(block).digest() == hashlib.sha256(data).digest()
        h = hashlib.md5()
        h.update(block)
        assert h.digest() == hashlib.md5(data).digest()
        assert zlib.crc32(block) == zlib.crc32(data)
        assert zlib.adler32(block) == zlib.adler32(data)
        assert zlib.decompress(zlib.compress(block)) == data


def test_readinto_fills_the_block(tmp_path):
    pool = BlockPool()
    data = bytes(range(256)) * 100
    with pool.get(len(data)) as block:
        assert io.BytesIO(data).readinto(block) == len(data)
        assert bytes(block) == data
    path = tmp_path / "data.bin"
    path.write_bytes(data[::-1])
    with pool.get(len(data)) as block, open(path, "rb", buffering=0) as f:
        assert f.readinto(block) == len(data)
        assert bytes(block) == data[::-1]
    with pool.get(len(data)) as block, open(path, "rb") as f:
        assert f.readinto(block) == len(data)
        assert bytes(block) == data[::-1]


def test_socket_recv_into_and_sendall():
    pool = BlockPool()
    data = bytes(range(251)) * 1000  # larger than a socket buffer
    a, b = socket.socketpair()
    with a, b:
        sender = threading.Thread(target=a.sendall, args=(data,))
        sender.start()
        with pool.get(len(data)) as block:
            got = 0
            with memoryview(block) as view:
                while got < len(data):
                    n = b.recv_into(view[got:])
                    assert n > 0
                    got += n
            sender.join()
            assert bytes(block) == data
            # And the other way: a block is sent as it is.
            echo = threading.Thread(target=b.sendall, args=(block,))
            echo.start()
            received = bytearray()
            while len(received) < len(data):
                received += a.recv(1 << 16)
            echo.join()
            assert received == data
        # recv_into the block directly, without slicing.
        with pool.get(5) as block:
            a.sendall(b"12345")
            assert b.recv_into(block) == 5
            assert bytes(block) == b"12345"


def test_zero_length_block_exports_an_empty_buffer():
    pool = BlockPool()
    with pool.get(0) as block:
        assert len(block) == 0
        assert bytes(block) == b""
        assert memoryview(block).nbytes == 0
        assert np.frombuffer(block, dtype=np.uint8).size == 0


# --- alignment ---


@pytest.mark.parametrize("alignment", [1, 2, 8, 64, 256, 4096])
def test_blocks_are_aligned(alignment):
    pool = BlockPool(alignment=alignment, max_block=MIB)
    assert pool.alignment == alignment
    blocks = [pool.get(n) for n in (1, 63, 100, 1000, 4097, 70_000, MIB, MIB + 7)]
    for block in blocks:
        assert address(block) % alignment == 0, (alignment, block)
    for block in blocks:
        block.release()
    del blocks, block  # exported: the memory comes back with the objects
    # Reused blocks too.
    blocks = [pool.get(n) for n in (1, 63, 100, 1000)]
    assert pool.stats().hits == 4
    for block in blocks:
        assert address(block) % alignment == 0
        block.release()


def test_default_alignment_is_64_for_every_class():
    pool = BlockPool(max_block=64 * KIB)
    for size in pool.classes:
        with pool.get(size) as block:
            assert address(block) % 64 == 0


# --- size classes ---


COARSE_FROM = 256 * KIB


def test_default_classes_are_four_per_doubling_then_four_times_apart():
    classes = BlockPool().classes
    assert classes == sorted(set(classes))
    assert classes[:9] == [64, 80, 96, 112, 128, 160, 192, 224, 256]
    assert classes[-1] == DEFAULT_MAX_BLOCK
    fine = [c for c in classes if c <= COARSE_FROM]
    for small, large in itertools.pairwise(fine):
        assert large / small <= 1.25, (small, large)
    powers = [c for c in fine if c & (c - 1) == 0]
    assert powers == [1 << k for k in range(6, 19)]
    assert len(fine) == 4 * (18 - 6) + 1
    # Above 256 KiB (issue 13): few classes, so that large blocks are reused.
    assert classes[len(fine) :] == [MIB, 4 * MIB, 16 * MIB]


def test_no_request_of_64_bytes_to_256_kib_wastes_more_than_a_fifth():
    pool = BlockPool()
    classes = pool.classes
    requests = {c + d for c in classes for d in (-1, 0, 1)}
    requests |= set(range(64, 1 << 20, 997))
    for n in sorted(r for r in requests if 64 <= r <= DEFAULT_MAX_BLOCK):
        size = smallest_class(pool, n)
        assert size >= n
        if n <= COARSE_FROM:
            assert (size - n) * 5 <= size, (n, size)
        else:
            assert size < 4 * n, (n, size)


@settings(max_examples=200, deadline=None, database=None)
@given(n=st.integers(0, DEFAULT_MAX_BLOCK))
def test_get_serves_the_smallest_class_at_least_n(n):
    pool = BlockPool(max_idle_bytes=0)
    with pool.get(n) as block:
        assert len(block) == n
        assert block.capacity == smallest_class(pool, n)
        if 64 <= n <= COARSE_FROM:
            assert (block.capacity - n) / block.capacity <= 0.20


def test_a_large_request_reuses_an_idle_larger_block():
    """Issue 13: a request above 256 KiB whose class has nothing idle takes
    the idle block of a larger class (recently used memory) instead of new
    memory; the block goes back to its own class."""
    pool = BlockPool(shards=1)
    with pool.get(3 * MIB) as block:
        first = address(block)
    del block  # exported: its memory comes back when the Block goes
    for n in (COARSE_FROM + 1, 700 * KIB, MIB, 2 * MIB):
        with pool.get(n) as block:
            assert (len(block), block.capacity) == (n, 4 * MIB)
            assert address(block) == first
        del block
    s = pool.stats()
    assert (s.misses, s.hits, s.idle) == (1, 4, 1)
    assert [(r.size, r.idle) for r in s.classes] == [(4 * MIB, 1)]
    # At or below 256 KiB, and with explicit classes, a class serves its own.
    with pool.get(COARSE_FROM) as block:
        assert block.capacity == COARSE_FROM
    explicit = BlockPool(classes=[MIB, 4 * MIB])
    explicit.get(3 * MIB).release()
    with explicit.get(KIB) as block:
        assert block.capacity == MIB
    assert explicit.stats().misses == 2


def test_requests_below_the_smallest_class_get_it():
    pool = BlockPool()
    for n in (0, 1, 63, 64):
        with pool.get(n) as block:
            assert block.capacity == 64


@pytest.mark.parametrize("zero", ["release", "acquire"])
def test_a_zeroing_pool_hands_out_large_blocks_all_zero(zero):
    """Issue 13: a zeroing pool zeroes a large block's bytes a lease could
    write, and no more; a later, longer lease of the same block (its class,
    or a smaller class taking it) still reads zero everywhere, also past
    what the first holder had."""
    # (written first, then read): the same 4 MiB or 1 MiB block each time;
    # 700 KiB (class 1 MiB, nothing idle there) takes the idle 4 MiB block.
    for sizes in ((3 * MIB, 4 * MIB), (2 * MIB, 700 * KIB, 4 * MIB), (300 * KIB, MIB)):
        pool = BlockPool(zero=zero, shards=1)
        with pool.get(sizes[0]) as block, memoryview(block) as view:
            view[:] = b"\xff" * len(view)
            start = address(block)
        del block  # exported: its memory comes back when the Block goes
        for n in sizes[1:]:
            with pool.get(n) as again, memoryview(again) as view:
                assert address(again) == start, f"{n}: the same block"
                assert holds_only(again, 0), n
                view[: n // 2] = b"\xee" * (n // 2)
            del again


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_large_block_is_resident_only_where_written():
    """Issue 13: a block of a large class costs memory only as it is
    written (a mapping of its own), not the whole class."""

    def rss_kib() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    pool = BlockPool(classes=[16 * MIB])
    before = rss_kib()
    block = pool.get(100)
    assert block.capacity == 16 * MIB
    assert rss_kib() - before < 4 * 1024, "a 16 MiB class block made resident whole"
    block.release()


@pytest.mark.parametrize(
    ("max_block", "last_two"),
    [(MIB, [256 * KIB, MIB]), (1000, [896, 1000]), (300 * KIB, [256 * KIB, 300 * KIB])],
)
def test_max_block_ends_the_default_classes(max_block, last_two):
    pool = BlockPool(max_block=max_block)
    assert pool.max_block == max_block
    assert pool.classes[-2:] == last_two


def test_tiny_max_block():
    pool = BlockPool(max_block=16)
    assert pool.classes[-1] == 16
    with pool.get(16) as block:
        assert block.capacity == 16
    with pool.get(17) as block:
        assert block.capacity == 17
    assert pool.stats().oversize == 1


def test_explicit_classes_any_order_and_any_iterable():
    pool = BlockPool(classes=iter([65536, 4096, 1 << 20]))
    assert pool.classes == [4096, 65536, 1 << 20]
    assert pool.max_block == 1 << 20
    for n, cap in ((1, 4096), (4096, 4096), (4097, 65536), (1 << 20, 1 << 20)):
        with pool.get(n) as block:
            assert block.capacity == cap


def test_layered_classes_with_idle_caps_in_one_line():
    pool = BlockPool(classes=[(4096, 1000), (65536, 500), (1 << 20, 100)])
    assert pool.classes == [4096, 65536, 1 << 20]
    for n in (10, 5000, 70_000):
        pool.get(n).release()
    assert [(c.size, c.max_idle) for c in pool.stats().classes] == [
        (4096, 1000),
        (65536, 500),
        (1 << 20, 100),
    ]


def test_sizes_and_pairs_can_be_mixed():
    pool = BlockPool(classes=[(4096, 3), 65536])
    pool.get(1).release()
    pool.get(5000).release()
    caps = {c.size: c.max_idle for c in pool.stats().classes}
    assert caps[4096] == 3
    assert caps[65536] >= 2  # a default


def test_max_block_must_match_explicit_classes():
    # With explicit classes the largest class is the largest pooled size: a
    # max_block above it would promise pooling that never happens.
    with pytest.raises(ValueError, match="max_block"):
        BlockPool(classes=[4096], max_block=65536)
    pool = BlockPool(classes=[4096], max_block=4096, shards=1)
    assert pool.max_block == 4096


def test_oversize_counts_exactly_the_requests_above_max_block():
    pool = BlockPool(classes=[4096, 65536], shards=1)
    assert pool.max_block == 65536
    for n in (100, 4096, 8192, 65536, 65537):
        pool.get(n).release()
    s = pool.stats()
    assert s.oversize == 1, "requests up to max_block must not be oversize"


# --- oversize requests ---


def test_request_above_max_block_gets_an_exact_unpooled_block():
    pool = BlockPool(classes=[4096, 65536], shards=1)
    block = pool.get(70_000)
    assert len(block) == block.capacity == 70_000
    assert address(block) % 64 == 0
    assert holds_only(block, 0)
    fill(block, 0xAB)
    s = pool.stats()
    assert (s.oversize, s.misses, s.created, s.bytes_in_use) == (1, 1, 1, 70_000)
    assert s.classes == ()
    block.release()
    del block  # exported: freed with the Block object
    s = pool.stats()
    assert (s.puts, s.destroyed, s.dropped, s.bytes_in_use, s.bytes_idle) == (1, 1, 1, 0, 0)
    assert len(pool) == 0
    with pool.get(70_000) as again:  # not reused: a new zeroed allocation
        assert holds_only(again, 0)
    s = pool.stats()
    assert (s.oversize, s.hits, s.misses) == (2, 0, 2)


def test_oversize_with_default_classes():
    pool = BlockPool()
    with pool.get(DEFAULT_MAX_BLOCK + 1) as block:
        assert block.capacity == DEFAULT_MAX_BLOCK + 1
        assert pool.stats().bytes_in_use == DEFAULT_MAX_BLOCK + 1
    assert pool.stats().bytes_idle == 0
    assert pool.stats().oversize == 1


# --- bounds on idle memory ---


def test_max_idle_bytes_caps_idle_memory_over_all_classes():
    pool = BlockPool(max_idle_bytes=10_000)
    assert pool.max_idle_bytes == 10_000
    blocks = [pool.get(4096) for _ in range(5)]
    for block in blocks:
        block.release()
        assert pool.stats().bytes_idle <= 10_000
    s = pool.stats()
    assert s.bytes_idle == 8192
    assert (s.dropped, s.destroyed, len(pool)) == (3, 3, 2)
    assert row(pool, 4096).dropped == 3
    # The cap covers every class: a 1024-byte block still fits, a 2048 one does not.
    small, mid = pool.get(1000), pool.get(2000)
    small.release()  # 8192 + 1024 fits
    mid.release()  # 9216 + 2048 does not
    s = pool.stats()
    assert s.bytes_idle == 8192 + 1024
    assert s.dropped == 4
    assert row(pool, 1024).idle == 1
    assert row(pool, 2048).dropped == 1


def test_zero_max_idle_bytes_keeps_nothing():
    pool = BlockPool(max_idle_bytes=0)
    for n in (1, 100, 5000):
        pool.get(n).release()
    s = pool.stats()
    assert (s.bytes_idle, s.dropped, s.destroyed, s.hits, len(pool)) == (0, 3, 3, 0, 0)


def test_a_block_larger_than_the_whole_cap_is_freed():
    pool = BlockPool(max_idle_bytes=1000)
    pool.get(2000).release()
    assert pool.stats().bytes_idle == 0
    assert pool.stats().dropped == 1


def test_per_class_idle_caps():
    pool = BlockPool(classes=[(4096, 2), (65536, 0)])
    blocks = [pool.get(4096) for _ in range(3)] + [pool.get(65536)]
    for block in blocks:
        block.release()
    assert row(pool, 4096).idle == 2
    assert row(pool, 4096).dropped == 1
    assert row(pool, 65536).idle == 0
    assert row(pool, 65536).dropped == 1
    s = pool.stats()
    assert (s.bytes_idle, s.dropped, len(pool)) == (8192, 2, 2)


def test_default_class_cap_is_reported_and_enforced():
    pool = BlockPool(max_block=DEFAULT_MAX_BLOCK)
    pool.get(DEFAULT_MAX_BLOCK).release()
    cap = row(pool, DEFAULT_MAX_BLOCK).max_idle
    assert cap >= 1
    assert cap * DEFAULT_MAX_BLOCK <= 2 * DEFAULT_MAX_IDLE_BYTES
    blocks = [pool.get(DEFAULT_MAX_BLOCK) for _ in range(cap + 1)]
    for block in blocks:
        block.release()
    r = row(pool, DEFAULT_MAX_BLOCK)
    assert r.idle == cap
    assert r.dropped >= 1
    assert pool.stats().bytes_idle <= DEFAULT_MAX_IDLE_BYTES


def test_idle_timeout_frees_blocks_idle_too_long():
    patient = BlockPool(idle_timeout=60)
    patient.get(1000).release()
    assert patient.trim(keep_bytes=1 << 30) == 0  # nothing expired
    with patient.get(1000):
        assert patient.stats().hits == 1
    pool = BlockPool(idle_timeout=0.05, shards=1)
    pool.get(1000).release()
    pool.get(100).release()
    time.sleep(0.15)
    assert pool.trim(keep_bytes=1 << 30) == 1024 + 112
    s = pool.stats()
    assert (s.expired, s.destroyed, s.bytes_idle, len(pool)) == (2, 2, 0, 0)


def test_expired_block_is_not_handed_out():
    pool = BlockPool(idle_timeout=0.05, shards=1)
    pool.get(1000).release()
    time.sleep(0.15)
    with pool.get(1000):
        pass
    s = pool.stats()
    assert (s.expired, s.hits, s.misses, s.created) == (1, 0, 2, 2)
    assert row(pool, 1024).expired == 1


def test_trim_frees_down_to_keep_bytes_and_returns_bytes_freed():
    pool = BlockPool()
    blocks = [pool.get(n) for n in (100, 100, 5000, 70_000)]
    total = sum(b.capacity for b in blocks)
    for block in blocks:
        block.release()
    assert pool.stats().bytes_idle == total
    freed = pool.trim(keep_bytes=300)
    idle = pool.stats().bytes_idle
    assert idle <= 300
    assert freed + idle == total
    assert idle == 224  # the two small blocks stay: the largest go first
    assert pool.trim(keep_bytes=300) == 0
    assert pool.trim() == 224
    assert pool.stats().bytes_idle == 0
    assert pool.stats().destroyed == 4


def test_trim_frees_the_largest_classes_first():
    pool = BlockPool(shards=1)
    blocks = [pool.get(65536)] + [pool.get(1024) for _ in range(4)]
    for block in blocks:
        block.release()
    assert pool.trim(keep_bytes=4096) == 65536
    assert pool.stats().bytes_idle == 4096
    assert row(pool, 1024).idle == 4


def test_clear_frees_everything_idle_and_returns_bytes():
    pool = BlockPool()
    held = pool.get(100)
    for n in (1000, 1000, 20_000):
        pool.get(n).release()
    idle = pool.stats().bytes_idle
    assert idle == 1024 + 20480  # the second 1000 reused the first
    assert pool.clear() == idle
    assert pool.clear() == 0
    s = pool.stats()
    assert (s.bytes_idle, s.bytes_in_use, len(pool)) == (0, 112, 0)
    held.release()
    assert pool.stats().bytes_idle == 112


# --- zeroing ---


@pytest.mark.parametrize(
    ("zero", "clean_on_reuse"), [("never", False), ("release", True), ("acquire", True)]
)
@pytest.mark.parametrize("n", [100, 300 * KIB])  # below and above the offload threshold
def test_zero_modes(zero, clean_on_reuse, n):
    pool = BlockPool(zero=zero, shards=1)
    assert pool.zero == zero
    block = pool.get(n)
    where = address(block)
    fill(block, 0xEE)
    block.release()
    del block  # exported: the memory comes back with the Block object
    again = pool.get(n)
    assert address(again) == where  # the same memory
    assert holds_only(again, 0) == clean_on_reuse
    if not clean_on_reuse:
        assert holds_only(again, 0xEE)  # what its last holder wrote
    fill(again, 0xEE)
    again.release()
    del again
    with pool.get(n, zeroed=True) as zeroed:
        assert address(zeroed) == where
        assert holds_only(zeroed, 0)


@pytest.mark.parametrize("zero", ["never", "release", "acquire"])
def test_zeroed_is_always_zero(zero):
    pool = BlockPool(zero=zero, shards=1, classes=[4096], max_block=4096)
    for n in (0, 1, 100, 4096, 5000):
        for _ in range(2):
            block = pool.get(n, zeroed=True)
            assert holds_only(block, 0), (zero, n)
            fill(block, 0x5A)
            block.release()


def test_zeroed_false_is_the_default():
    pool = BlockPool(shards=1)
    block = pool.get(100)
    fill(block, 1)
    block.release()
    del block  # exported: the memory comes back with the Block object
    with pool.get(100, zeroed=False) as block:
        assert holds_only(block, 1)


def test_zero_on_release_also_zeroes_after_a_deferred_release():
    pool = BlockPool(zero="release", shards=1)
    with pool.get(1000) as block:
        view = memoryview(block)
        view[:] = b"\xff" * 1000
    view.release()
    del block  # the last reference: the memory comes back, zeroed
    with pool.get(1000) as block:
        assert pool.stats().hits == 1
        assert holds_only(block, 0)


# --- release safety ---


def test_release_while_a_memoryview_is_alive_raises_and_the_block_stays_valid():
    pool = BlockPool()
    block = pool.get(100)
    view = memoryview(block)
    before = snapshot(pool)
    with pytest.raises(BufferError, match="view"):
        block.release()
    with pytest.raises(BufferError):
        pool.put(block)
    assert snapshot(pool) == before
    assert not block.released
    assert len(block) == 100
    view[:3] = b"abc"
    assert bytes(block)[:3] == b"abc"
    memoryview(block)[3:6] = b"def"  # still exportable
    assert bytes(view[:6]) == b"abcdef"
    view.release()
    block.release()
    assert block.released
    assert pool.stats().puts == 0, "exported: the memory waits for the Block object"
    del block
    assert pool.stats().puts == 1


def test_release_while_a_numpy_view_is_alive_raises():
    pool = BlockPool()
    block = pool.get(64)
    arr = np.frombuffer(block, dtype=np.uint8)
    with pytest.raises(BufferError):
        block.release()
    arr[:] = 9
    assert holds_only(block, 9)
    del arr
    block.release()


# --- every route to a block's memory ---
#
# Consumers of the buffer protocol either hold an export while they use the
# memory (then release() raises BufferError until they are gone), or use it
# only during a call, or take the address, end the export at once and keep a
# reference to the block (numpy's ndarray(buffer=...)). For the last kind a
# release is allowed, and the memory must not be reused or freed while the
# consumer lives: the memory of an exported block goes back only when the
# Block object is collected. docs/guide/blocks-and-buffers.md lists the same
# consumers.


class Route:
    """A consumer of a block's memory, and what it keeps: ``"export"`` (an
    export, for as long as the returned object lives), ``"address"`` (the
    address and a reference to the block, no export) or ``"nothing"`` (an
    export during the call, or a copy)."""

    def __init__(self, name, use, keeps: str) -> None:
        self.name = name
        self.use = use  # block -> what the consumer keeps (or None)
        self.keeps = keeps

    def __repr__(self) -> str:
        return self.name


def _recv_into(block):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\x05" * len(block))
        assert b.recv_into(block) == len(block)


def _readinto(block):
    assert io.BytesIO(b"\x05" * len(block)).readinto(block) == len(block)


def _ctypes_view(block):
    return (ctypes.c_char * len(block)).from_buffer(block)


def _ctypes_copy(block):
    return (ctypes.c_char * len(block)).from_buffer_copy(block)


ROUTES = [
    Route("memoryview", memoryview, "export"),
    Route("memoryview slice", lambda b: memoryview(b)[1:], "export"),
    Route("memoryview.cast", lambda b: memoryview(b).cast("I"), "export"),
    Route("np.frombuffer", lambda b: np.frombuffer(b, np.uint8), "export"),
    Route("np.asarray", np.asarray, "export"),
    Route("ctypes from_buffer", _ctypes_view, "export"),
    Route("PickleBuffer", pickle.PickleBuffer, "export"),
    Route(
        "np.ndarray(buffer=block)",
        lambda b: np.ndarray((len(b),), np.uint8, buffer=b),
        "address",
    ),
    Route(
        "np.ndarray(buffer=memoryview(block))",
        lambda b: np.ndarray((len(b),), np.uint8, buffer=memoryview(b)),
        "address",
    ),
    Route("np.array (a copy)", np.array, "nothing"),
    Route("bytes", bytes, "nothing"),
    Route("bytearray", bytearray, "nothing"),
    Route("ctypes from_buffer_copy", _ctypes_copy, "nothing"),
    Route("struct.pack_into", lambda b: struct.pack_into("<Q", b, 0, 5), "nothing"),
    Route("struct.unpack_from", lambda b: struct.unpack_from("<Q", b), "nothing"),
    Route("socket.recv_into", _recv_into, "nothing"),
    Route("readinto", _readinto, "nothing"),
    Route("hashlib", lambda b: hashlib.sha256(b).digest(), "nothing"),
    Route("zlib", zlib.compress, "nothing"),
    Route("io.BytesIO", io.BytesIO, "nothing"),
]


@pytest.mark.parametrize("route", ROUTES, ids=repr)
def test_every_route_to_a_block_holds_an_export_or_never_sees_reused_memory(route):
    pool = BlockPool(classes=[4096], shards=1)
    block = pool.get(4096)
    where = address(block)
    memoryview(block)[:] = b"\x11" * 4096
    kept = route.use(block)
    if route.keeps == "export":
        with pytest.raises(BufferError, match="1 view"):
            block.release()
        assert not block.released
        del kept  # the consumer goes; now the block can be released
        gc.collect()
        kept = None
    block.release()
    assert block.released
    with pytest.raises(BufferError, match="released"):
        memoryview(block)
    # Exported at some point: not handed on while the Block object lives.
    again = pool.get(4096)
    assert address(again) != where
    memoryview(again)[:] = b"\x22" * 4096
    again.release()
    del again
    if route.keeps == "address":
        assert bytes(kept) == b"\x11" * 4096, "a consumer reads the next holder's bytes"
    del block
    if route.keeps == "address":
        assert pool.stats().in_use == 1  # the consumer holds the Block object
        assert bytes(kept) == b"\x11" * 4096
    del kept
    gc.collect()
    s = pool.stats()
    assert (s.in_use, s.bytes_in_use, s.idle) == (0, 0, 2)
    first, second = pool.get(4096), pool.get(4096)  # idle blocks, oldest first
    assert address(second) == where, "the memory came back once everything let go"
    first.release()
    second.release()


def test_release_under_np_ndarray_buffer_defers_the_memory_to_the_block_object():
    """Issue 11, defect 1: numpy's ndarray(buffer=block) ends its export at
    once and keeps only a reference; the array then read the next holder's
    bytes (or freed memory) after block.release()."""
    pool = BlockPool(classes=[4096], shards=1)
    block = pool.get(4096)
    array = np.ndarray((4096,), np.uint8, buffer=block)
    array[:] = 0x11
    block.release()  # allowed: no export is alive
    assert block.released
    nxt = pool.get(4096)
    assert address(nxt) != array.ctypes.data
    memoryview(nxt)[:] = b"\x22" * 4096
    assert int(array.min()) == int(array.max()) == 0x11
    s = pool.stats()
    assert (s.in_use, s.bytes_in_use) == (2, 8192)  # the deferred block counts
    del block  # the array still holds the Block object
    assert pool.stats().in_use == 2
    nxt.release()
    del nxt
    del array  # the last reference: the memory comes back now
    s = pool.stats()
    assert (s.in_use, s.idle, s.puts) == (0, 2, 2)


def test_release_under_np_ndarray_buffer_of_a_freed_block_does_not_crash():
    """Issue 11, defect 1, as reported: an oversize block is freed on
    release, and the array read unmapped memory (SIGSEGV). Run in a child so
    a crash is reported, not suffered."""
    code = (
        "import gc, numpy as np\n"
        "from shardpool import BlockPool\n"
        "pool = BlockPool(max_block=4096)\n"
        "b = pool.get(64 << 20)\n"
        "a = np.ndarray((64 << 20,), np.uint8, buffer=b)\n"
        "a[:] = 3\n"
        "b.release()\n"
        "del b\n"
        "gc.collect()\n"
        "print(int(a.sum()), flush=True)\n"
        "assert pool.stats().bytes_in_use == 64 << 20\n"
        "del a\n"
        "s = pool.stats()\n"
        "assert (s.bytes_in_use, s.destroyed) == (0, 1), s\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.strip() == str(3 * (64 << 20))


def test_poison_makes_a_read_after_release_through_a_kept_address_fail_loudly():
    pool = BlockPool(zero="poison", classes=[64], shards=1)
    block = pool.get(64)
    array = np.ndarray((64,), np.uint8, buffer=block)
    memoryview(block)[:] = b"secret!!" * 8
    block.release()
    assert bytes(array) == b"\xdb" * 64  # poisoned at the release, not later
    with pool.get(64) as other:  # and not reused meanwhile
        assert address(other) != array.ctypes.data
    # With a view alive at a `with` exit the view keeps working: no poison.
    with pool.get(64) as block:
        view = memoryview(block)
        view[:] = b"kept!!!!" * 8
    assert bytes(view) == b"kept!!!!" * 8
    view.release()


def test_a_block_never_exported_goes_back_at_release():
    pool = BlockPool(shards=1)
    for let_go in (Block.release, pool.put, lambda b: b.__exit__(None, None, None)):
        block = pool.get(100)
        let_go(block)
        s = pool.stats()
        assert (s.in_use, s.idle) == (0, 1), let_go  # while the object lives
        assert block.released
    assert pool.stats().misses == 1, "the one block went round"


def test_with_recv_into_in_a_loop_reuses_two_blocks():
    """The common pattern: each block is exported (recv_into), so its memory
    comes back when the name is bound to the next block; two blocks take
    turns and every get after the second is a hit."""
    pool = BlockPool(shards=1)
    a, b = socket.socketpair()
    with a, b:
        for i in range(10):
            a.sendall(bytes([i]) * 100)
            with pool.get(100) as block:
                assert b.recv_into(block) == 100
                assert bytes(block) == bytes([i]) * 100
    s = pool.stats()
    assert (s.misses, s.hits, s.in_use) == (2, 8, 1)  # `block` still names the last
    del block
    assert pool.stats().in_use == 0


def test_huge_classes_serve_huge_requests_with_a_class_at_least_as_large():
    """Issue 11, defect 2: with max_block near 2**63 the class was computed
    with `4 * n`, which overflowed: get(2**62) picked a class of 2**60. (Above
    256 KiB the default classes are four times apart, issue 13: 2**62 is
    one, and the next is max_block.)"""
    pool = BlockPool(max_block=2**63 - 1)
    assert 2**62 in pool.classes
    assert pool.classes[-1] == 2**63 - 1
    before = pool.stats().as_dict()
    for n, size in ((2**62, 2**62), (2**62 + 1, 2**63 - 1), (2**63 - 2, 2**63 - 1)):
        with pytest.raises(MemoryError, match=f"block of {size} bytes"):
            pool.get(n)
    after = pool.stats().as_dict()
    rows = after.pop("classes")  # the classes tried, with nothing counted
    assert [r["size"] for r in rows] == [2**62, 2**63 - 1]
    assert all(r[k] == 0 for r in rows for k in ("idle", "in_use", "hits", "misses", "puts"))
    before.pop("classes")
    assert after == before


def test_released_block_cannot_be_used():
    pool = BlockPool()
    block = pool.get(100)
    capacity = block.capacity
    block.release()
    before = snapshot(pool)
    for export in (memoryview, bytes, bytearray, lambda b: np.frombuffer(b, dtype=np.uint8)):
        with pytest.raises(BufferError, match="released"):
            export(block)
    with pytest.raises(ValueError, match="released"):
        len(block)
    with pytest.raises(ValueError, match="released"):
        block.release()
    with pytest.raises(ValueError, match="released"):
        pool.put(block)
    with pytest.raises(ValueError, match="released"), block:
        pass
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        with pytest.raises((BufferError, TypeError)):
            b.recv_into(block)
    assert snapshot(pool) == before
    assert block.released
    assert block.capacity == capacity


def test_leaving_with_while_views_are_alive_defers_the_release():
    pool = BlockPool()
    with pool.get(100) as block:
        view = memoryview(block)
        view[:5] = b"hello"
    assert block.released
    s = pool.stats()
    assert (s.puts, s.bytes_in_use, s.bytes_idle) == (0, 112, 0)
    # The view still works, reading and writing.
    assert bytes(view[:5]) == b"hello"
    view[0] = ord("j")
    assert bytes(view[:5]) == b"jello"
    with pytest.raises(BufferError):
        memoryview(block)
    with pytest.raises(ValueError, match="released"):
        block.release()
    with pytest.raises(ValueError, match="released"):
        len(block)
    view.release()
    del view
    assert pool.stats().puts == 0, "the Block object still lives"
    del block  # the last reference: the memory comes back
    s = pool.stats()
    assert (s.puts, s.bytes_in_use, s.bytes_idle, len(pool)) == (1, 0, 112, 1)


def test_deferred_release_waits_for_the_last_of_several_views():
    pool = BlockPool()
    with pool.get(1000) as block:
        arr = np.frombuffer(block, dtype=np.uint8)
        view = memoryview(block)
        sliced = view[10:20]
        view.release()  # `sliced` keeps the export of `view` alive
    del block, view  # the views hold the Block object
    assert pool.stats().puts == 0
    del arr
    gc.collect()
    assert pool.stats().puts == 0
    sliced[0] = 1
    sliced.release()  # ends the export and drops the last reference to the block
    s = pool.stats()
    assert (s.puts, s.bytes_idle, s.bytes_in_use) == (1, 1024, 0)


def test_deferred_release_of_an_oversize_block_frees_it():
    pool = BlockPool(classes=[4096])
    with pool.get(10_000) as block:
        arr = np.frombuffer(block, dtype=np.uint8)
    del block  # the array holds it
    assert pool.stats().bytes_in_use == 10_000
    arr[:] = 1
    del arr
    s = pool.stats()
    assert (s.bytes_in_use, s.bytes_idle, s.destroyed, s.dropped) == (0, 0, 1, 1)


def test_block_outlives_its_pool_object():
    pool = BlockPool()
    block = pool.get(100)
    stats_of = pool.stats
    del pool
    gc.collect()
    memoryview(block)[:2] = b"ok"
    assert bytes(block)[:2] == b"ok"
    block.release()
    del block  # exported: the memory comes back with the Block object
    assert stats_of().puts == 1


def test_put_of_another_pools_block_is_refused_and_changes_nothing():
    mine, other = BlockPool(), BlockPool()
    block = other.get(100)
    before = snapshot(mine), snapshot(other)
    with pytest.raises(ValueError, match="another BlockPool"):
        mine.put(block)
    assert (snapshot(mine), snapshot(other)) == before
    assert not block.released
    memoryview(block)[0] = 1
    other.put(block)
    del block  # exported: the memory comes back with the Block object
    assert other.stats().puts == 1
    assert mine.stats().puts == 0


@pytest.mark.parametrize("thing", [None, b"x", bytearray(10), 5])
def test_put_of_a_non_block_raises_type_error(used_pool, thing):
    before = snapshot(used_pool)
    with pytest.raises(TypeError):
        used_pool.put(thing)
    assert snapshot(used_pool) == before


# --- closing ---


def test_closed_pool_refuses_get_keeps_held_blocks_valid_and_frees_releases():
    pool = BlockPool()
    held = pool.get(100)
    big = pool.get(100_000)
    pool.get(1000).release()
    assert pool.stats().bytes_idle == 1024
    pool.close()
    assert pool.closed
    assert pool.stats().bytes_idle == 0
    assert len(pool) == 0
    before = snapshot(pool)
    for n in (0, 100, DEFAULT_MAX_BLOCK + 1):
        with pytest.raises(PoolClosed, match="closed"):
            pool.get(n)
    with pytest.raises(PoolClosed):
        pool.get(10, zeroed=True)
    assert snapshot(pool) == before
    memoryview(held)[:3] = b"abc"
    assert bytes(held)[:3] == b"abc"
    fill(big, 3)
    assert holds_only(big, 3)
    held.release()
    with big:
        pass
    del held, big  # exported: freed with the Block objects
    s = pool.stats()
    assert (s.bytes_idle, s.bytes_in_use, s.destroyed, len(pool)) == (0, 0, 3, 0)
    pool.close()  # idempotent
    assert pool.trim() == 0
    assert pool.clear() == 0
    assert "closed" in repr(pool)


def test_deferred_release_after_close_frees():
    pool = BlockPool()
    with pool.get(100) as block:
        view = memoryview(block)
    pool.close()
    view.release()
    del view, block
    s = pool.stats()
    assert (s.bytes_idle, s.bytes_in_use, s.puts, s.destroyed) == (0, 0, 1, 1)


def test_pool_as_context_manager_closes():
    with BlockPool() as pool:
        pool.get(10).release()
    assert pool.closed
    assert pool.stats().bytes_idle == 0


# --- stats ---


def test_stats_totals_rows_and_as_dict():
    pool = BlockPool(classes=[(256, 1), 4096], shards=1)
    held = pool.get(4000)
    a, b = pool.get(100), pool.get(200)
    a.release()
    b.release()  # dropped: the 256 class keeps one
    pool.get(10).release()  # hit
    pool.get(10_000).release()  # oversize
    s = pool.stats()
    assert s.hits == 1
    assert s.misses == 4
    assert s.created == 4
    assert s.puts == 4
    assert s.dropped == 2
    assert s.destroyed == 2
    assert s.oversize == 1
    assert s.bytes_idle == 256
    assert s.bytes_in_use == 4096
    assert s.hit_rate == pytest.approx(1 / 5)
    assert [c.size for c in s.classes] == [256, 4096]
    small, large = s.classes
    assert (small.max_idle, small.idle, small.in_use) == (1, 1, 0)
    assert (small.hits, small.misses, small.puts, small.dropped) == (1, 2, 3, 1)
    assert (large.idle, large.in_use, large.hits, large.misses, large.puts) == (0, 1, 0, 1, 0)
    d = s.as_dict()
    assert set(d) == {*TOTAL_FIELDS, "hit_rate", "classes"}
    for field in TOTAL_FIELDS:
        assert d[field] == getattr(s, field), field
    assert d["hit_rate"] == s.hit_rate
    assert len(d["classes"]) == 2
    for rowd, r in zip(d["classes"], s.classes, strict=True):
        assert set(rowd) == set(CLASS_FIELDS)
        for field in CLASS_FIELDS:
            assert rowd[field] == getattr(r, field), field
    assert "bytes_idle=256" in repr(s)
    assert "size=256" in repr(small)
    held.release()


def test_stats_is_a_snapshot():
    pool = BlockPool()
    s = pool.stats()
    pool.get(10).release()
    assert (s.puts, s.misses, s.bytes_idle) == (0, 0, 0)
    assert pool.stats().puts == 1


def test_stats_balance_and_rows_sum_to_totals():
    pool = BlockPool(max_idle_bytes=50_000, shards=2)
    held = []
    for i, n in enumerate([10, 100, 1000, 5000, 20_000, 100, 10, 1000, 30_000, 70_000] * 5):
        held.append(pool.get(n))
        if i % 3 == 0:
            held.pop(0).release()
    s = pool.stats()
    assert s.created == s.destroyed + len(pool) + sum(c.in_use for c in s.classes)
    assert sum(c.idle for c in s.classes) == len(pool)
    assert sum(c.idle * c.size for c in s.classes) == s.bytes_idle
    assert sum(c.in_use * c.size for c in s.classes) == s.bytes_in_use
    assert s.bytes_in_use == sum(b.capacity for b in held)
    assert sum(c.hits for c in s.classes) == s.hits
    assert sum(c.misses for c in s.classes) == s.misses
    assert s.bytes_idle <= 50_000
    for block in held:
        block.release()
    s = pool.stats()
    assert s.bytes_in_use == 0
    assert s.created == s.destroyed + len(pool)


def test_repr_of_pool():
    pool = BlockPool(max_block=1024)
    with pool.get(100):
        text = repr(pool)
    assert text.startswith("<BlockPool ")
    assert "bytes_in_use=112" in text
    assert "max_block=1024" in text


# --- error paths: the right exception, naming the argument, nothing changed ---
# (bad arguments to every method: the one table in tests/errors/test_bad_input.py)


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="max_blocks"):
        BlockPool(max_blocks=10)


def test_valid_edge_arguments_are_accepted():
    assert BlockPool(zero=None).zero == "never"
    assert BlockPool(alignment=1).alignment == 1
    assert BlockPool(alignment=4096).alignment == 4096
    assert BlockPool(max_idle_bytes=0).max_idle_bytes == 0
    assert BlockPool(idle_timeout=float("inf")).classes
    assert BlockPool(classes=[(4096, 0)]).classes == [4096]
    assert BlockPool(classes=[1]).classes == [1]


def test_failed_allocation_of_a_pooled_class_raises_memory_error():
    pool = BlockPool(classes=[2**62], max_block=2**62)
    before = snapshot(pool)
    with pytest.raises(MemoryError, match="allocate"):
        pool.get(10)
    after = snapshot(pool)
    for field in ("bytes_idle", "bytes_in_use", "hits", "misses", "created", "puts"):
        assert after[0][field] == before[0][field], field


def test_double_release_raises_and_changes_nothing():
    pool = BlockPool()
    block = pool.get(10)
    block.release()
    before = snapshot(pool)
    with pytest.raises(ValueError, match="released already"):
        block.release()
    assert snapshot(pool) == before


def test_numpy_integers_are_accepted_as_sizes_but_bools_are_not():
    pool = BlockPool(shards=1)
    with pool.get(np.int64(100)) as block:
        assert len(block) == 100
    assert pool.trim(keep_bytes=np.uint32(0)) > 0
    with pytest.raises(TypeError, match="n must be an int"):
        pool.get(True)
    with pytest.raises(TypeError, match="n must be an int"):
        pool.get(np.float64(3.0))


def test_stats_count_blocks_in_use_and_idle():
    pool = BlockPool(classes=[64, 4096])
    a, b, big = pool.get(10), pool.get(4000), pool.get(100_000)
    s = pool.stats()
    assert (s.in_use, s.idle) == (3, 0)
    a.release()
    big.release()
    s = pool.stats()
    assert (s.in_use, s.idle) == (1, 1)  # the oversize block is freed, not kept
    assert s.as_dict()["in_use"] == 1
    assert s.as_dict()["idle"] == len(pool) == 1
    b.release()
    assert pool.stats().in_use == 0
