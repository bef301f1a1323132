"""BufferPool and Buffer: growable output buffers, their read-only zero-copy
export, release safety, calibration of what the pool keeps, closing, stats, and
every error path."""

from __future__ import annotations

import array
import ctypes
import gc
import hashlib
import io
import pickle
import random
import socket
import threading
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardpool
from shardpool import Buffer, BufferPool, PoolClosed, PoolStats

from helpers import address, run_threads, snapshot

KIB = 1 << 10
MIB = 1 << 20
CALIBRATION_WINDOW = 1000  # src/buffers.rs
INITIAL_CAPACITY = 4096
DEFAULT_MAX_CAPACITY = 16 * MIB


def use(pool: BufferPool, n: int) -> None:
    """One use of a buffer: `n` bytes written, then released."""
    with pool.get() as buf:
        if n:
            buf.write(b"\x01" * n)


@pytest.fixture
def used_pool():
    """A pool with history: a buffer held, two idle, counters set."""
    pool = BufferPool(shards=1)
    held = pool.get()
    held.write(b"held")
    a, b = pool.get(), pool.get()
    a.write(b"a" * 10)
    a.release()
    b.release()
    use(pool, 100)
    yield pool
    if not held.released:
        held.release()


# --- package surface ---


def test_package_exports_the_buffer_names():
    for name in ("BufferPool", "Buffer"):
        assert name in shardpool.__all__
        assert getattr(shardpool, name) is not None


def test_help_documents_the_pool_and_its_arguments(capsys):
    help(BufferPool)
    text = capsys.readouterr().out
    for word in ("max_idle", "max_capacity", "idle_timeout", "shards", "percentile"):
        assert word in text, word
    for method in ("get", "put", "stats", "trim", "clear", "close"):
        doc = getattr(BufferPool, method).__doc__
        assert doc, method
        assert len(doc.strip()) > 10, method
    assert "buffer protocol" in (Buffer.__doc__ or "")


def test_defaults():
    pool = BufferPool()
    assert pool.max_idle == 1024
    assert pool.max_capacity == DEFAULT_MAX_CAPACITY
    assert pool.typical_capacity == INITIAL_CAPACITY
    assert pool.large_capacity is None
    assert pool.closed is False
    assert len(pool) == 0
    s = pool.stats()
    assert isinstance(s, PoolStats)
    assert (s.created, s.hits, s.misses, s.puts, s.idle, s.in_use) == (0,) * 6


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        BufferPool(10)
    with pytest.raises(TypeError, match="max_idles"):
        BufferPool(max_idles=10)
    pool = BufferPool()
    with pytest.raises(TypeError):
        pool.get(100)
    buf = pool.get()
    with pytest.raises(TypeError):
        pool.put(buf=buf)
    with pytest.raises(TypeError):
        buf.write(data=b"x")
    buf.release()


# --- writing and reading ---


def test_the_documented_example():
    pool = BufferPool()
    a, b = socket.socketpair()
    with a, b:
        with pool.get() as buf:
            assert isinstance(buf, Buffer)
            assert len(buf) == 0
            assert buf.write(b"hello, ") == 7
            buf += b"world"
            a.sendall(buf)
            data = buf.getvalue()
        assert data == b"hello, world"
        assert b.recv(100) == b"hello, world"
    assert buf.released
    del buf  # exported (sendall): the bytes come back with the Buffer object
    s = pool.stats()
    assert (s.puts, s.idle, s.in_use) == (1, 1, 0)


def test_iadd_returns_the_same_buffer():
    pool = BufferPool()
    buf = pool.get()
    same = buf
    buf += b"abc"
    assert buf is same
    buf += bytearray(b"def")
    buf += memoryview(b"ghi")
    assert buf.getvalue() == b"abcdefghi"
    buf.release()


def test_write_extend_and_iadd_append():
    pool = BufferPool()
    with pool.get() as buf:
        assert buf.write(b"ab") == 2
        assert buf.extend(b"cd") is None
        buf += b"ef"
        assert buf.write(b"") == 0
        assert buf.getvalue() == b"abcdef"
        assert len(buf) == 6
        assert repr(buf) == f"<Buffer len=6 capacity={buf.capacity}>"


BYTES_LIKE = [
    pytest.param(b"bytes", id="bytes"),
    pytest.param(bytearray(b"bytearray"), id="bytearray"),
    pytest.param(memoryview(b"memoryview"), id="memoryview"),
    pytest.param(memoryview(b"xxsliceyy")[2:7], id="memoryview-slice"),
    pytest.param(array.array("B", b"array-B"), id="array-B"),
    pytest.param(np.arange(10, dtype=np.uint8), id="numpy-uint8"),
    pytest.param(np.arange(12, dtype=np.uint8).reshape(3, 4), id="numpy-uint8-2d"),
    # Bytes-like objects whose items are not single unsigned bytes: io.BytesIO,
    # bytearray, hashlib and sockets all take them as their raw bytes.
    pytest.param(memoryview(b"abcd").cast("i"), id="memoryview-cast-i"),
    pytest.param(array.array("b", [1, -2, 3]), id="array-b"),
    pytest.param(array.array("i", [1, 2, 3]), id="array-i"),
    pytest.param(np.arange(3, dtype=np.int32), id="numpy-int32"),
    pytest.param(np.linspace(0, 1, 4), id="numpy-float64"),
]


@pytest.mark.parametrize("data", BYTES_LIKE)
def test_write_accepts_any_bytes_like_object_like_bytesio(data):
    expected = io.BytesIO()
    n = expected.write(data)
    pool = BufferPool()
    with pool.get() as buf:
        buf.write(b"<")
        assert buf.write(data) == n
        buf.extend(data)
        buf += data
        buf.write(b">")
        assert buf.getvalue() == b"<" + expected.getvalue() * 3 + b">"


@settings(max_examples=100, deadline=None, database=None)
@given(chunks=st.lists(st.binary(max_size=6000), max_size=20))
def test_contents_are_the_writes_in_order_also_in_a_reused_buffer(chunks):
    pool = BufferPool(shards=1)
    expected = b"".join(chunks)
    for _ in range(2):
        with pool.get() as buf:
            for i, chunk in enumerate(chunks):
                if i % 3 == 0:
                    buf.write(chunk)
                elif i % 3 == 1:
                    buf += bytearray(chunk)
                else:
                    buf.extend(memoryview(chunk))
            assert len(buf) == len(expected)
            assert buf.getvalue() == expected
            assert bytes(buf) == expected
            assert buf.capacity >= len(expected)
        del buf  # exported (bytes): the bytes come back with the Buffer object
    assert pool.stats().hits == 1


def test_write_copies_a_non_contiguous_view():
    pool = BufferPool()
    with pool.get() as buf:
        assert buf.write(memoryview(b"abcdef")[::2]) == 3
        assert buf.getvalue() == b"ace"


def test_write_copies_the_data():
    pool = BufferPool()
    source = bytearray(b"abc")
    with pool.get() as buf:
        buf.write(source)
        source[0] = ord("X")
        assert buf.getvalue() == b"abc"


def test_buffer_grows_as_written():
    pool = BufferPool()
    chunks = [bytes([i % 251]) * (i * 37 % 5000) for i in range(200)]
    with pool.get() as buf:
        assert buf.capacity == INITIAL_CAPACITY
        for chunk in chunks:
            buf.write(chunk)
            assert buf.capacity >= len(buf)
        assert buf.getvalue() == b"".join(chunks)
        assert buf.capacity > INITIAL_CAPACITY


def test_returned_buffer_is_cleared_and_keeps_its_capacity():
    pool = BufferPool(shards=1)
    buf = pool.get()
    buf.write(b"z" * 100_000)
    capacity = buf.capacity
    assert capacity >= 100_000
    buf.release()
    with pool.get() as again:
        assert len(again) == 0
        assert again.getvalue() == b""
        assert again.capacity == capacity
        assert bytes(again) == b""
    s = pool.stats()
    assert (s.hits, s.misses, s.created) == (1, 1, 1)


def test_clear_empties_and_keeps_capacity():
    pool = BufferPool()
    with pool.get() as buf:
        buf.write(b"q" * 10_000)
        capacity = buf.capacity
        buf.clear()
        assert len(buf) == 0
        assert buf.getvalue() == b""
        assert buf.capacity == capacity
        buf.write(b"new")
        assert buf.getvalue() == b"new"


# --- the buffer protocol ---


def test_contents_are_exported_read_only_and_zero_copy():
    pool = BufferPool()
    data = bytes(range(256)) * 10
    with pool.get() as buf:
        buf.write(data)
        view = memoryview(buf)
        assert view.readonly
        assert view.format == "B"
        assert view.nbytes == len(data)
        assert view.obj is buf
        assert view.tobytes() == data
        with pytest.raises(TypeError):
            view[0] = 1
        arr = np.frombuffer(buf, dtype=np.uint8)
        assert not arr.flags.writeable
        assert arr.ctypes.data == np.frombuffer(view, dtype=np.uint8).ctypes.data
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1
        assert bytes(arr) == data
        del arr
        view.release()
        assert bytes(buf) == data
        assert bytearray(buf) == data
        assert hashlib.sha256(buf).digest() == hashlib.sha256(data).digest()
        assert zlib.crc32(buf) == zlib.crc32(data)


# --- every route to a buffer's memory ---
#
# As for blocks (test_block_pool.py): a consumer holds an export (the buffer
# cannot change or be released meanwhile), uses the bytes during a call, or
# keeps the address and a reference without an export (numpy's
# ndarray(buffer=...)). Once exported, a buffer's bytes never move to
# another allocation and never go back to the pool while its object lives.


def _sendall(buf: Buffer) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(buf)
        assert b.recv(1 << 16) == bytes(buf)


BUFFER_ROUTES = {
    "memoryview": (memoryview, "export"),
    "np.frombuffer": (lambda b: np.frombuffer(b, np.uint8), "export"),
    "np.asarray": (np.asarray, "export"),
    "PickleBuffer": (pickle.PickleBuffer, "export"),
    "np.ndarray(buffer=buf)": (lambda b: np.ndarray((len(b),), np.uint8, buffer=b), "address"),
    "bytes": (bytes, "nothing"),
    "struct.unpack_from": (lambda b: __import__("struct").unpack_from("<Q", b), "nothing"),
    "socket.sendall": (_sendall, "nothing"),
    "file.write": (lambda b: io.BytesIO().write(b), "nothing"),
    "hashlib": (lambda b: hashlib.sha256(b).digest(), "nothing"),
    "zlib": (zlib.compress, "nothing"),
}


@pytest.mark.parametrize("name", BUFFER_ROUTES)
def test_every_route_to_a_buffer_holds_an_export_or_never_sees_moved_or_reused_bytes(name):
    use_it, keeps = BUFFER_ROUTES[name]
    pool = BufferPool(shards=1)
    buf = pool.get()
    buf.write(b"A" * 64)
    where = address(buf)
    kept = use_it(buf)
    if keeps == "export":
        with pytest.raises(BufferError, match="view"):
            buf.write(b"x")
        with pytest.raises(BufferError, match="view"):
            buf.release()
        del kept
        gc.collect()
        kept = None
    # Outgrow the allocation: the bytes move, the old ones stay alive.
    buf.write(b"B" * 10 * INITIAL_CAPACITY)
    assert buf.getvalue() == b"A" * 64 + b"B" * 10 * INITIAL_CAPACITY
    assert address(buf) != where
    if keeps == "address":
        assert bytes(kept) == b"A" * 64, "a consumer reads freed memory"
    buf.release()
    assert buf.released
    with pool.get() as other:  # not handed on while the Buffer object lives
        other.write(b"C" * 64)
        if keeps == "address":
            assert bytes(kept) == b"A" * 64, "a consumer reads the next holder's bytes"
        del other
    del buf
    if keeps == "address":
        assert pool.stats().in_use == 1  # the consumer holds the Buffer object
    del kept
    gc.collect()
    s = pool.stats()
    assert (s.in_use, s.puts) == (0, 2)


def test_ctypes_cannot_take_a_buffer_writable():
    pool = BufferPool()
    with pool.get() as buf:
        buf.write(b"abc")
        with pytest.raises(TypeError):
            (ctypes.c_char * 3).from_buffer(buf)
        buf.write(b"d")  # the refused export left nothing behind
    del buf
    assert pool.stats().in_use == 0, "a refused export does not defer the release"


def test_release_under_np_ndarray_buffer_never_shows_the_next_holders_bytes():
    """Issue 11's defect 1, for Buffer: the released bytes went to the next
    holder while an ndarray(buffer=buf) still read them."""
    pool = BufferPool(shards=1)
    buf = pool.get()
    buf.write(b"A" * 100)
    array = np.ndarray((100,), np.uint8, buffer=buf)
    buf.release()
    nxt = pool.get()
    nxt.write(b"B" * 100)
    assert bytes(array) == b"A" * 100
    nxt.release()
    del nxt, buf
    assert pool.stats().in_use == 1
    del array
    assert pool.stats().in_use == 0


def test_a_write_that_outgrows_a_buffer_under_np_ndarray_keeps_the_old_bytes():
    """A sibling of defect 1: a write after np.ndarray(buffer=buf) grew the
    buffer in place of its old allocation, which it freed under the array."""
    pool = BufferPool()
    with pool.get() as buf:
        buf.write(bytes(range(256)) * 4)
        array = np.ndarray((1024,), np.uint8, buffer=buf)
        for _ in range(5):
            buf.write(b"\xff" * 100_000)  # grows: moves the bytes each time
            assert bytes(array) == bytes(range(256)) * 4
        assert len(buf) == 1024 + 500_000
    assert bytes(array) == bytes(range(256)) * 4
    del array, buf
    assert pool.stats().in_use == 0


def test_a_buffer_never_exported_goes_back_at_release_and_grows_in_place():
    pool = BufferPool(shards=1)
    for let_go in (Buffer.release, pool.put, lambda b: b.__exit__(None, None, None)):
        buf = pool.get()
        buf.write(b"x" * 10_000)  # grows as a plain Vec does
        buf.getvalue()  # a copy, not an export
        let_go(buf)
        assert buf.released
        s = pool.stats()
        assert (s.in_use, s.idle) == (0, 1), let_go  # while the object lives
    assert pool.stats().misses == 1


def test_sendall_sends_the_contents():
    pool = BufferPool()
    data = bytes(range(253)) * 2000  # more than a socket buffer
    a, b = socket.socketpair()
    with a, b, pool.get() as buf:
        buf.write(data)
        sender = threading.Thread(target=a.sendall, args=(buf,))
        sender.start()
        received = bytearray()
        while len(received) < len(data):
            received += b.recv(1 << 16)
        sender.join()
        assert received == data


def test_writable_export_is_refused_and_leaves_the_buffer_usable():
    pool = BufferPool()
    a, b = socket.socketpair()
    with a, b, pool.get() as buf:
        buf.write(b"abc")
        a.sendall(b"xyz")
        with pytest.raises(TypeError):
            b.recv_into(buf)
        with pytest.raises(TypeError):
            io.BytesIO(b"xyz").readinto(buf)
        buf.write(b"def")  # no export was left behind
        buf.clear()
        assert buf.getvalue() == b""
    assert pool.stats().puts == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda buf: buf.write(b"x"),
        lambda buf: buf.extend(b"x"),
        lambda buf: buf.__iadd__(b"x"),
        lambda buf: buf.clear(),
        lambda buf: buf.release(),
    ],
    ids=["write", "extend", "iadd", "clear", "release"],
)
def test_no_change_while_an_export_is_alive(change):
    pool = BufferPool()
    buf = pool.get()
    buf.write(b"abc")
    view = memoryview(buf)
    before = pool.stats()
    with pytest.raises(BufferError, match="view"):
        change(buf)
    assert buf.getvalue() == b"abc"
    assert bytes(view) == b"abc"
    assert not buf.released
    assert pool.stats() == before
    with pytest.raises(BufferError):
        pool.put(buf)
    arr = np.frombuffer(buf, dtype=np.uint8)
    view.release()
    with pytest.raises(BufferError):
        change(buf)
    del arr
    change(buf)  # allowed again
    if not buf.released:
        buf.release()


def test_writing_a_buffer_into_itself_is_refused():
    pool = BufferPool()
    with pool.get() as buf:
        buf.write(b"abc")
        with pytest.raises(BufferError):
            buf.write(buf)
        assert buf.getvalue() == b"abc"
        buf.write(b"d")  # the export of the failed write ended
        assert buf.getvalue() == b"abcd"


def test_leaving_with_while_a_view_is_alive_defers_the_release():
    pool = BufferPool(shards=1)
    with pool.get() as buf:
        buf.write(b"payload")
        view = memoryview(buf)
    assert buf.released
    assert pool.stats().puts == 0
    assert bytes(view) == b"payload"  # the view still reads the contents
    with pytest.raises(ValueError, match="released"):
        len(buf)
    with pytest.raises(ValueError, match="released"):
        buf.getvalue()
    with pytest.raises(ValueError, match="released"):
        buf.write(b"x")
    with pytest.raises(ValueError, match="released"):
        buf.release()
    with pytest.raises(BufferError):
        memoryview(buf)
    view.release()
    assert pool.stats().puts == 0, "the Buffer object still lives"
    del view, buf
    s = pool.stats()
    assert (s.puts, s.idle, s.in_use) == (1, 1, 0)
    with pool.get() as again:
        assert again.getvalue() == b""


# --- release ---


def test_release_and_put_both_return_the_buffer():
    pool = BufferPool()
    a, b = pool.get(), pool.get()
    a.release()
    pool.put(b)
    assert a.released
    assert b.released
    s = pool.stats()
    assert (s.puts, s.idle, s.in_use) == (2, 2, 0)


def test_with_releases_on_exception():
    pool = BufferPool()
    with pytest.raises(KeyError), pool.get() as buf:
        raise KeyError("x")
    assert buf.released
    assert pool.stats().puts == 1


def test_release_inside_with_is_not_repeated():
    pool = BufferPool()
    with pool.get() as buf:
        buf.release()
    assert pool.stats().puts == 1
    assert len(pool) == 1


def test_released_buffer_cannot_be_used():
    pool = BufferPool()
    buf = pool.get()
    buf.write(b"abc")
    buf.release()
    before = snapshot(pool)
    for op in (
        lambda: buf.write(b"x"),
        lambda: buf.extend(b"x"),
        lambda: buf.__iadd__(b"x"),
        buf.getvalue,
        buf.clear,
        buf.release,
        lambda: len(buf),
        lambda: buf.capacity,
        lambda: pool.put(buf),
    ):
        with pytest.raises(ValueError, match="released"):
            op()
    with pytest.raises(ValueError, match="released"), buf:
        pass
    with pytest.raises(BufferError, match="released"):
        memoryview(buf)
    with pytest.raises(BufferError, match="released"):
        bytes(buf)
    assert repr(buf) == "<Buffer released>"
    assert snapshot(pool) == before


def test_put_of_another_pools_buffer_is_refused_and_changes_nothing():
    mine, other = BufferPool(), BufferPool()
    buf = other.get()
    buf.write(b"abc")
    before = snapshot(mine), snapshot(other)
    with pytest.raises(ValueError, match="another BufferPool"):
        mine.put(buf)
    assert (snapshot(mine), snapshot(other)) == before
    assert buf.getvalue() == b"abc"
    other.put(buf)
    assert other.stats().puts == 1


def test_buffer_outlives_its_pool_object():
    pool = BufferPool()
    buf = pool.get()
    stats_of = pool.stats
    del pool
    gc.collect()
    buf.write(b"still fine")
    assert buf.getvalue() == b"still fine"
    buf.release()
    assert stats_of().puts == 1


# --- bounds ---


def test_max_idle_bounds_idle_buffers():
    pool = BufferPool(max_idle=2)
    assert pool.max_idle == 2
    bufs = [pool.get() for _ in range(3)]
    for buf in bufs:
        buf.release()
    s = pool.stats()
    assert (s.idle, s.dropped, s.destroyed, len(pool)) == (2, 1, 1, 2)


def test_max_capacity_is_a_hard_cap_on_what_is_kept():
    pool = BufferPool(max_capacity=64 * KIB)
    assert pool.max_capacity == 64 * KIB
    use(pool, 100 * KIB)
    s = pool.stats()
    assert (s.dropped, s.idle) == (1, 0)
    use(pool, 10 * KIB)
    assert pool.stats().idle == 1


def test_new_buffers_never_start_above_max_capacity():
    pool = BufferPool(max_capacity=1000)
    with pool.get() as buf:
        assert buf.capacity <= 1000
        buf.write(b"x" * 5000)  # may still grow past it
        assert buf.getvalue() == b"x" * 5000
    assert len(pool) == 0


def test_idle_timeout_expires_buffers():
    patient = BufferPool(idle_timeout=60)
    use(patient, 10)
    assert patient.trim(keep=100) == 0  # nothing expired
    use(patient, 10)
    assert patient.stats().hits == 1
    pool = BufferPool(idle_timeout=0.05, shards=1)
    use(pool, 10)
    use(pool, 10)
    time.sleep(0.15)
    assert pool.trim(keep=100) == 1
    s = pool.stats()
    assert (s.expired, s.destroyed, s.idle) == (1, 1, 0)
    use(pool, 10)
    time.sleep(0.15)
    use(pool, 10)  # the expired one is not handed out
    s = pool.stats()
    assert (s.expired, s.misses) == (2, 3)


def test_trim_and_clear_return_counts():
    pool = BufferPool()
    bufs = [pool.get() for _ in range(5)]
    for buf in bufs:
        buf.release()
    assert len(pool) == 5
    assert pool.trim(keep=2) == 3
    assert len(pool) == 2
    assert pool.trim() == 2
    assert pool.clear() == 0
    use(pool, 1)
    assert pool.clear() == 1
    assert pool.stats().destroyed == 6


# --- calibration ---


def test_calibration_learns_typical_and_large_sizes_and_drops_a_huge_buffer():
    pool = BufferPool(shards=1)
    # Before calibration only the hard cap applies: a huge buffer is kept...
    use(pool, MIB)
    assert (len(pool), pool.stats().dropped) == (1, 0)
    # ... and reused (it is the only idle buffer) for small uses.
    for _ in range(CALIBRATION_WINDOW - 2):
        use(pool, 1000)
    assert pool.large_capacity is None
    assert pool.typical_capacity == INITIAL_CAPACITY
    assert pool.stats().created == 1
    # The window's last return calibrates; the huge buffer is then far above
    # the 95th percentile and is dropped rather than kept.
    use(pool, 1000)
    assert pool.typical_capacity == 1024
    assert pool.large_capacity == 1024
    s = pool.stats()
    assert (s.dropped, s.idle) == (1, 0)
    # New buffers get the typical capacity.
    with pool.get() as buf:
        assert buf.capacity == pool.typical_capacity == 1024
        buf.write(b"x" * 1000)
    assert len(pool) == 1
    # Huge buffers are no longer kept: retained memory stays bounded.
    bufs = [pool.get() for _ in range(10)]
    for buf in bufs:
        buf.write(b"h" * (4 * MIB))
    for buf in bufs:
        buf.release()
    s = pool.stats()
    assert s.dropped == 1 + 10
    assert len(pool) == 0


def test_calibration_keeps_buffers_up_to_twice_the_95th_percentile():
    pool = BufferPool(shards=1)
    sizes = [20_000 if i % 16 == 0 else 1000 for i in range(CALIBRATION_WINDOW)]
    assert sizes.count(20_000) > CALIBRATION_WINDOW // 20  # more than 5% medium
    for n in sizes:
        use(pool, n)
    assert pool.typical_capacity == 1024
    assert pool.large_capacity == 32768  # the 95th percentile is a medium use
    dropped = pool.stats().dropped
    use(pool, 20_000)  # capacity <= 2 * 32768: kept
    assert pool.stats().dropped == dropped
    use(pool, 100_000)  # capacity > 2 * 32768: dropped
    assert pool.stats().dropped == dropped + 1


def test_a_rare_medium_use_is_above_the_95th_percentile():
    pool = BufferPool(shards=1)
    sizes = [20_000 if i % 50 == 0 else 1000 for i in range(CALIBRATION_WINDOW)]
    for n in sizes:
        use(pool, n)
    assert pool.large_capacity == 1024
    dropped = pool.stats().dropped
    use(pool, 20_000)
    assert pool.stats().dropped == dropped + 1


def test_calibration_follows_a_change_of_workload():
    pool = BufferPool(shards=1)
    for _ in range(CALIBRATION_WINDOW):
        use(pool, 1000)
    assert (pool.typical_capacity, pool.large_capacity) == (1024, 1024)
    for _ in range(CALIBRATION_WINDOW):
        use(pool, 100_000)
    assert (pool.typical_capacity, pool.large_capacity) == (131072, 131072)
    dropped = pool.stats().dropped
    use(pool, 100_000)  # now in line with recent use: kept
    assert pool.stats().dropped == dropped
    with pool.get() as buf:
        assert buf.capacity >= 100_000


def test_calibration_counts_empty_and_gc_returns():
    pool = BufferPool(shards=1)
    for _ in range(CALIBRATION_WINDOW - 1):
        use(pool, 0)
    assert pool.large_capacity is None
    buf = pool.get()
    with pytest.warns(ResourceWarning):
        del buf
    assert pool.large_capacity == 64
    assert pool.typical_capacity == 64


# --- closing ---


def test_closed_pool_refuses_get_keeps_held_buffers_usable_and_drops_releases():
    pool = BufferPool()
    held = pool.get()
    use(pool, 10)
    assert len(pool) == 1
    pool.close()
    assert pool.closed
    assert len(pool) == 0
    before = pool.stats()
    with pytest.raises(PoolClosed, match="closed"):
        pool.get()
    assert pool.stats() == before
    held.write(b"still usable")
    assert held.getvalue() == b"still usable"
    held.release()
    s = pool.stats()
    assert (s.idle, s.in_use, s.destroyed) == (0, 0, 2)
    pool.close()
    assert "closed" in repr(pool)


def test_pool_as_context_manager_closes():
    with BufferPool() as pool:
        use(pool, 10)
    assert pool.closed
    assert len(pool) == 0


# --- stats ---


def test_stats_count_and_balance():
    pool = BufferPool(max_idle=3, shards=1)
    bufs = [pool.get() for _ in range(5)]
    for buf in bufs:
        buf.release()
    for _ in range(4):
        use(pool, 10)
    s = pool.stats()
    assert (s.created, s.misses, s.hits, s.puts, s.dropped) == (5, 5, 4, 9, 2)
    assert s.created == s.destroyed + s.idle + s.in_use
    assert s.hit_rate == pytest.approx(4 / 9)
    d = s.as_dict()
    assert d["puts"] == 9
    assert d["hit_rate"] == s.hit_rate
    assert "typical_capacity=4096" in repr(pool)


# --- threads ---


def test_threads_share_a_pool_without_mixing_contents():
    pool = BufferPool(max_idle=4)
    barrier = threading.Barrier(4)

    def work(tid: int) -> None:
        rng = random.Random(tid)
        barrier.wait()
        for _ in range(1500):
            n = rng.choice((0, 10, 1000, 5000, 70_000))
            chunk = bytes([tid]) * n
            with pool.get() as buf:
                assert len(buf) == 0
                buf.write(chunk)
                buf += chunk
                assert buf.getvalue() == chunk * 2
                assert bytes(memoryview(buf)) == chunk * 2

    assert run_threads(lambda i: work(i + 1), 4) == []  # thread ids 1 to 4
    s = pool.stats()
    assert s.puts == 6000
    assert s.in_use == 0
    assert s.idle <= 4
    assert s.created == s.destroyed + s.idle
    assert pool.large_capacity is not None


# --- error paths: the right exception, naming the argument, nothing changed ---
# (bad arguments to every method: the one table in tests/errors/test_bad_input.py)


# Stable ids (not an address) so that every pytest-xdist worker collects the same tests.
@pytest.mark.parametrize(
    "data",
    ["text", 5, None, [1, 2], 1.5, object()],
    ids=lambda v: "object()" if type(v) is object else repr(v),
)
@pytest.mark.parametrize("method", ["write", "extend", "__iadd__"])
def test_writing_a_non_bytes_like_object_raises_type_error_and_changes_nothing(
    used_pool, method, data
):
    with used_pool.get() as buf:
        buf.write(b"abc")
        before = snapshot(used_pool)
        with pytest.raises(TypeError, match="bytes-like"):
            getattr(buf, method)(data)
        assert buf.getvalue() == b"abc"
        assert snapshot(used_pool) == before
        buf.write(b"d")
        assert buf.getvalue() == b"abcd"
