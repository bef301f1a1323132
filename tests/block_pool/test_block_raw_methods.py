"""BlockPool.get, Block.release, BufferPool.get, Buffer.release and
Buffer.write are hand-written method-table entries
(src/python/raw_method.rs), not PyO3 methods: they must look and behave
exactly as PyO3's did (signatures, docs, argument errors, including
CPython's for the methods PyO3 made METH_NOARGS), take only instances, and
release every reference they give up at once (PyO3's reference pool defers
a release made while its attach count is 0)."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from shardpool import Block, BlockPool, Buffer, BufferPool

from helpers import assert_hand_written_method

# --- what introspection sees ---


@pytest.mark.parametrize(
    ("cls", "name", "text", "shown", "doc"),
    [
        (
            BlockPool,
            "get",
            "($self, n, /, *, zeroed=False)",
            "(self, n, /, *, zeroed=False)",
            "A ``Block`` of exactly ``n`` usable bytes",
        ),
        (Block, "release", "($self)", "(self, /)", "Give the block back to the pool."),
        (BufferPool, "get", "($self)", "(self, /)", "An empty ``Buffer``."),
        (Buffer, "release", "($self)", "(self, /)", "Give the buffer back to its pool."),
        (Buffer, "write", "($self, data, /)", "(self, data, /)", "Append a bytes-like object;"),
    ],
)
def test_the_methods_are_method_descriptors_with_their_signatures(
    cls: type, name: str, text: str, shown: str, doc: str
) -> None:
    assert_hand_written_method(cls, name, text, shown, doc)


def test_the_classes_cannot_be_subclassed() -> None:
    # As with #[pymethods]: the entries' messages name these classes (a
    # subclass would still be named by its base).
    for cls in (BlockPool, Block, BufferPool, Buffer):
        with pytest.raises(TypeError, match="not an acceptable base type"):
            type("Sub", (cls,), {})


# --- arguments: PyO3's (and CPython's) messages, the pool unchanged ---

BP = "BlockPool.get()"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, f"{BP} missing 1 required positional argument: 'n'"),
        ((), {"zeroed": True}, f"{BP} missing 1 required positional argument: 'n'"),
        ((1, 2), {}, f"{BP} takes 1 positional arguments but 2 were given"),
        ((1, 2, 3), {"x": 1}, f"{BP} takes 1 positional arguments but 3 were given"),
        (
            (),
            {"n": 1},
            f"{BP} got some positional-only arguments passed as keyword arguments: 'n'",
        ),
        (
            (1,),
            {"n": 2, "zeroed": True},
            f"{BP} got some positional-only arguments passed as keyword arguments: 'n'",
        ),
        ((), {"x": 1}, f"{BP} got an unexpected keyword argument 'x'"),
        ((1,), {"zeroed": True, "x": 2}, f"{BP} got an unexpected keyword argument 'x'"),
        ((1,), {"x": 2, "zeroed": True}, f"{BP} got an unexpected keyword argument 'x'"),
        ((1,), {"zeroed": 1}, "'int' object is not an instance of 'bool'"),
        ((1,), {"zeroed": "yes"}, "'str' object is not an instance of 'bool'"),
        (("3",), {}, "n must be an int, got str"),
        ((True,), {}, "n must be an int, got bool"),
        ((-1,), {}, "n must be >= 0, got -1"),
        ((-(2**70),), {}, f"n must be >= 0, got {-(2**70)}"),
        ((2**64,), {}, f"n is out of range, got {2**64}"),
    ],
)
def test_block_get_refuses_bad_arguments_as_before(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    pool = BlockPool()
    pool.get(8).release()
    stats = repr(pool.stats())
    with pytest.raises((TypeError, ValueError)) as info:
        pool.get(*args, **kwargs)
    assert str(info.value) == message
    if "instance of 'bool'" in message:
        assert info.value.__notes__ == ["while processing 'zeroed'"]
    assert repr(pool.stats()) == stats


def test_block_get_takes_any_index_and_zeroed_by_keyword() -> None:
    class Index:
        def __index__(self) -> int:
            return 5

    class Int(int):
        pass

    pool = BlockPool(zero="never")
    for n, size in [(0, 0), (7, 7), (Int(9), 9), (Index(), 5)]:
        with pool.get(n) as block:
            assert len(block) == size
    with pool.get(64) as block:
        memoryview(block)[:] = b"\xff" * 64
    with pool.get(64, zeroed=True) as block:
        assert bytes(block) == bytes(64)
    with pool.get(64, zeroed=False) as block:
        assert len(block) == 64
    with pytest.raises(MemoryError, match=str(2**63)):
        pool.get(2**63)  # above isize: the slow path, the core's refusal


MAKERS: dict[str, Callable[[], Any]] = {
    "block": lambda: BlockPool().get(8),
    "buffer": lambda: BufferPool().get(),
    "buffer pool": BufferPool,
}
W = "Buffer.write()"
PO = "got some positional-only arguments passed as keyword arguments"


@pytest.mark.parametrize(
    ("kind", "call", "message"),
    [
        ("block", lambda b: b.release(1), "Block.release() takes no arguments (1 given)"),
        ("block", lambda b: b.release(x=1), "Block.release() takes no keyword arguments"),
        ("block", lambda b: b.release(1, x=1), "Block.release() takes no keyword arguments"),
        ("block", lambda b: (b.release)(1, 2), "Block.release() takes no arguments (2 given)"),
        ("buffer", lambda b: b.release(1), "Buffer.release() takes no arguments (1 given)"),
        ("buffer", lambda b: b.release(x=1), "Buffer.release() takes no keyword arguments"),
        ("buffer pool", lambda p: p.get(1), "BufferPool.get() takes no arguments (1 given)"),
        ("buffer pool", lambda p: p.get(x=1), "BufferPool.get() takes no keyword arguments"),
        ("buffer", lambda b: b.write(), f"{W} missing 1 required positional argument: 'data'"),
        ("buffer", lambda b: b.write(b"", b""), f"{W} takes 1 positional arguments but 2 were given"),  # noqa: E501
        ("buffer", lambda b: b.write(b"a", x=1), f"{W} got an unexpected keyword argument 'x'"),
        ("buffer", lambda b: b.write(data=b"a"), f"{W} {PO}: 'data'"),
        ("buffer", lambda b: b.write("s"), "a bytes-like object is required, not 'str'"),
    ],
)  # fmt: skip
def test_no_argument_methods_and_write_refuse_bad_arguments_as_before(
    kind: str, call: Callable[[Any], object], message: str
) -> None:
    obj = MAKERS[kind]()
    with pytest.raises(TypeError) as info:
        call(obj)
    assert str(info.value) == message
    if isinstance(obj, (Block, Buffer)):
        assert not obj.released
        if isinstance(obj, Buffer):
            assert obj.getvalue() == b""
        obj.release(**{})  # no keywords at all: accepted
        assert obj.released


def test_only_instances_are_taken_as_self() -> None:
    blocks, buffers = BlockPool(), BufferPool()
    block, buf = blocks.get(8), buffers.get()
    for method, args in [
        (BlockPool.get, (buffers, 1)),
        (Block.release, (buf,)),
        (BufferPool.get, (blocks,)),
        (Buffer.release, (block,)),
        (Buffer.write, (block, b"a")),
    ]:
        with pytest.raises(TypeError, match="doesn't apply to a 'shardpool"):
            method(*args)
        with pytest.raises(TypeError, match="doesn't apply to a 'int' object"):
            method(5, *args[1:])
    assert not block.released
    assert not buf.released
    assert Buffer.write(buf, b"abc") == 3
    Block.release(block)
    Buffer.release(buf)
    assert block.released
    assert buf.released
    with BlockPool.get(blocks, 3) as block:
        assert len(block) == 3
    with BufferPool.get(buffers) as buf:
        assert isinstance(buf, Buffer)


# --- references: balanced, and released at once ---


def test_calls_leave_every_reference_count_as_it_was() -> None:
    blocks, buffers = BlockPool(), BufferPool()
    data, n = b"x" * 100, 4096
    # Warm up: a spare object of each class, the method caches.
    blocks.get(n).release()
    buffers.get().release()
    counts = [sys.getrefcount(o) for o in (blocks, buffers, data, n)]
    for _ in range(100):
        block = blocks.get(n)
        block.release()
        with blocks.get(n, zeroed=True):
            pass
        buf = buffers.get()
        assert buf.write(data) == 100
        buf.release()
    del block, buf
    assert [sys.getrefcount(o) for o in (blocks, buffers, data, n)] == counts


@pytest.mark.parametrize("kind", ["block", "buffer"])
def test_a_released_object_is_freed_at_once(kind: str) -> None:
    # Weakly referenced, so never kept for reuse: the release hands it back
    # and the last name's `del` frees it, with no collection.
    pool: Any = BlockPool() if kind == "block" else BufferPool()
    obj = pool.get(8) if kind == "block" else pool.get()
    freed: list[bool] = []
    ref = weakref.ref(obj, lambda _: freed.append(True))
    gc.disable()
    try:
        obj.release()
        del obj
        assert freed == [True]
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("kind", ["block", "buffer"])
def test_a_spare_weakly_referenced_after_release_is_freed_by_the_next_get(kind: str) -> None:
    pool: Any = BlockPool() if kind == "block" else BufferPool()
    get = (lambda: pool.get(8)) if kind == "block" else pool.get
    obj = get()
    obj.release()  # kept as a spare: the pool holds it
    freed: list[bool] = []
    ref = weakref.ref(obj, lambda _: freed.append(True))
    del obj
    assert freed == []
    gc.disable()
    try:
        fresh = get()  # the spare is weakly referenced: discarded, freed here
        assert freed == [True]
        assert ref() is None
        assert not fresh.released
        fresh.release()
    finally:
        gc.enable()
