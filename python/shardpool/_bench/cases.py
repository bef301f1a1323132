"""Every operation the bench measures, written once for both modes.

A case is Python source: ``setup`` runs once, then ``stmt`` is the operation
timed (wall clock) or counted (instructions). Both modes run the setup inside
the measuring function, as ``timeit`` does, so the names it binds are local
variables and the statement is what a tuned loop would execute.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

OBJECT_POOL = "from shardpool import ObjectPool\n"
BLOCK_POOL = "from shardpool import BlockPool\n"


@dataclass(frozen=True)
class Case:
    key: str
    """A stable name: ``--case``, the JSON and the targets refer to it."""
    name: str
    """What the table and the chart call it."""
    stmt: str
    setup: str = ""
    per: int = 1
    """Operations per ``stmt`` (a batch of 64 counts as 64)."""
    shardpool: bool = False
    """Measures shardpool itself (marked apart from the references)."""
    requires: str = ""
    """A module the case needs (a pool library from the ``bench`` extra)."""
    package: str = ""
    """The distribution that provides ``requires``."""
    iterations: int = 200_000
    """Loop iterations in the instruction mode. Start-up dominates a run under
    valgrind, so many iterations cost little; they divide the few hundred
    instructions by which the extension's start-up varies between processes
    (see ``shardpool._bench.instructions``) down to a thousandth per operation."""

    def available(self) -> bool:
        return not self.requires or importlib.util.find_spec(self.requires) is not None


@dataclass(frozen=True)
class Group:
    """Cases compared with each other: ratios are to the first, the reference."""

    title: str
    cases: tuple[Case, ...]


# The floor of any reuse from Python: take an object from a deque, put it back.
DEQUE_PAIR = Case(
    "deque_pair",
    "deque pop+append pair",
    "d.append(d.pop())",
    "from collections import deque\nd = deque([object()])",
)
MINIMAL_POOL = Case(
    "minimal_pool",
    "minimal pure-Python deque pool",
    "p.put(p.get())",
    "from shardpool._bench.references import MinimalPool\np = MinimalPool(object)\np.put(p.get())",
)
SIMPLE_QUEUE = Case(
    "simple_queue",
    "queue.SimpleQueue pool",
    "q.put(q.get_nowait())",
    "import queue\nq = queue.SimpleQueue()\nq.put(object())",
)


def _object_pool(key: str, name: str, args: str) -> Case:
    return Case(
        key,
        name,
        "p.put(p.get())",
        f"{OBJECT_POOL}p = ObjectPool({args})\np.put(p.get())",
        shardpool=True,
    )


CHECKED = _object_pool("objectpool_checked", "ObjectPool (checked, the default)", "object")
UNCHECKED = _object_pool(
    "objectpool_unchecked", "ObjectPool checked=False", "object, checked=False"
)
BOUNDED = _object_pool("objectpool_max_size", "ObjectPool max_size=1024", "object, max_size=1024")


def _batch(key: str, name: str, args: str) -> Case:
    return Case(
        key,
        name,
        "p.put_many(p.get_many(64))",
        f"{OBJECT_POOL}p = ObjectPool({args})\np.put_many(p.get_many(64))",
        per=64,
        shardpool=True,
        iterations=4_000,
    )


BATCH_CHECKED = _batch(
    "batch_checked", "ObjectPool get_many/put_many(64), per object", "object, max_idle=64"
)
BATCH_UNCHECKED = _batch(
    "batch_unchecked",
    "ObjectPool checked=False get_many/put_many(64), per object",
    "object, max_idle=64, checked=False",
)

WITH = "with {}() as o:\n    pass"
BORROW = Case(
    "borrow",
    "ObjectPool.borrow() as a with block",
    WITH.format("p.borrow"),
    f"{OBJECT_POOL}p = ObjectPool(object)\np.put(p.get())",
    shardpool=True,
)
CLASS_BORROW = Case(
    "class_borrow",
    "class-based context manager",
    "with B(p) as o:\n    pass",
    "from shardpool._bench.references import ClassBorrow as B, MinimalPool\n"
    "p = MinimalPool(object)",
)
GENERATOR_BORROW = Case(
    "generator_borrow",
    "@contextmanager",
    "with g(p) as o:\n    pass",
    "from shardpool._bench.references import MinimalPool, generator_borrow as g\n"
    "p = MinimalPool(object)",
)


def size_label(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def _size_key(n: int) -> str:
    return size_label(n).replace(" ", "").lower()


def bytearray_case(n: int) -> Case:
    return Case(
        f"bytearray_{_size_key(n)}",
        f"bytearray({size_label(n)})",
        "bytearray(n)",
        f"n = {n}",
        # It writes n zero bytes per iteration: fewer iterations keep large
        # sizes quick under valgrind (the count stays exact: a difference).
        iterations=200_000 if n <= 4096 else 2_000 if n <= 65536 else 200,
    )


def block_case(n: int) -> Case:
    return Case(
        f"block_{_size_key(n)}",
        f"BlockPool get+release, {size_label(n)}",
        "p.get(n).release()",
        f"{BLOCK_POOL}n = {n}\np = BlockPool()\np.get(n).release()",
        shardpool=True,
    )


def block_with_case(n: int) -> Case:
    return Case(
        f"block_with_{_size_key(n)}",
        f"with BlockPool.get({size_label(n)}) as b",
        "with p.get(n) as b:\n    pass",
        f"{BLOCK_POOL}n = {n}\np = BlockPool()\np.get(n).release()",
        shardpool=True,
    )


DATA_100 = "data = bytes(100)\n"
BYTEARRAY_BUILD = Case(
    "bytearray_build",
    "bytearray() += 100 B",
    "b = bytearray()\nb += data",
    DATA_100,
)
BYTESIO_BUILD = Case(
    "bytesio_build",
    "io.BytesIO().write(100 B)",
    "b = BytesIO()\nb.write(data)",
    f"from io import BytesIO\n{DATA_100}",
)
BUFFER = Case(
    "buffer",
    "BufferPool get+write(100 B)+release",
    "b = p.get()\nb.write(data)\nb.release()",
    f"from shardpool import BufferPool\n{DATA_100}p = BufferPool()\np.get().release()",
    shardpool=True,
)

EXTENSION_CALL = Case(
    "extension_call",
    "a call into the extension (no arguments, returns None)",
    "f()",
    "from shardpool._core import _attached_noop as f",
    shardpool=True,
)

BLOCK_SIZES = (64, 4096, 65536, 1 << 20, 16 << 20)


def wall_clock_groups() -> list[Group]:
    """The single-thread comparisons of ``python -m shardpool bench``."""
    groups = [
        Group(
            "get+put round trip",
            (
                DEQUE_PAIR,
                MINIMAL_POOL,
                SIMPLE_QUEUE,
                CHECKED,
                UNCHECKED,
                BOUNDED,
                BATCH_CHECKED,
                BATCH_UNCHECKED,
            ),
        ),
        Group("with-block borrow", (DEQUE_PAIR, CLASS_BORROW, GENERATOR_BORROW, BORROW)),
    ]
    for n in BLOCK_SIZES:
        groups.append(
            Group(
                f"byte block of {size_label(n)}",
                (bytearray_case(n), block_case(n), block_with_case(n)),
            )
        )
    groups.append(Group("100 B of output in a buffer", (BYTEARRAY_BUILD, BYTESIO_BUILD, BUFFER)))
    groups.append(peer_group())
    groups.append(peer_with_group())
    groups.append(gil_group())
    return groups


def instruction_groups() -> list[Group]:
    """The instruction mode's cases: every one issue 13's targets name, and
    what they are compared with. Every ratio is to the deque pair."""
    sizes = (64, 65536, 1 << 20)
    return [
        Group(
            "object pools: get+put",
            (
                DEQUE_PAIR,
                CHECKED,
                UNCHECKED,
                BOUNDED,
                BORROW,
                BATCH_CHECKED,
                BATCH_UNCHECKED,
                MINIMAL_POOL,
                SIMPLE_QUEUE,
            ),
        ),
        Group(
            "byte blocks: get+release",
            (
                *(block_case(n) for n in sizes),
                *(bytearray_case(n) for n in sizes),
                *(block_with_case(n) for n in sizes),
            ),
        ),
        Group("growable buffers: 100 B of output", (BUFFER, BYTEARRAY_BUILD)),
        Group("the floor: one call into the extension", (EXTENSION_CALL,)),
    ]


def instruction_cases() -> list[Case]:
    return [c for g in instruction_groups() for c in g.cases]


PLAIN = "from shardpool._bench.references import Plain\n"
PEER_GROUP = "Python pool libraries: get+put round trip"
PEER_WITH_GROUP = "Python pool libraries: with block"


def _peer(key: str, name: str, stmt: str, setup: str, requires: str, package: str) -> Case:
    return Case(key, name, stmt, PLAIN + setup, requires=requires, package=package)


def peer_group() -> Group:
    """The pool libraries on PyPI (the ``bench`` extra), against ``ObjectPool``."""
    return Group(
        PEER_GROUP,
        (
            Case(
                "peer_shardpool",
                "shardpool ObjectPool",
                "p.put(p.get())",
                f"{PLAIN}{OBJECT_POOL}p = ObjectPool(Plain)\np.put(p.get())",
                shardpool=True,
            ),
            _peer(
                "peer_object_pool",
                "object-pool",
                "p.put(p.get())",
                "from object_pool import ObjectPool\np = ObjectPool(Plain)\np.put(p.get())",
                "object_pool",
                "object-pool",
            ),
            _peer(
                "peer_fastalloc",
                "fastalloc ThreadSafePool",
                "p.release(p.get())",
                "from fastalloc import ThreadSafePool\np = ThreadSafePool(Plain, 1024)",
                "fastalloc",
                "fastalloc",
            ),
            _peer(
                "peer_pondpond",
                "pondpond",
                "p.recycle(p.borrow(f), f)",
                "from shardpool._bench.references import pond_pool\np, f = pond_pool()",
                "pond",
                "pondpond",
            ),
            _peer(
                "peer_syncpool",
                "syncpool-py",
                "p.put(p.get())",
                # Its get() returns None when empty instead of creating: prime it.
                "from syncpool_py.pools.syncpool import SyncObjectPool\n"
                "p = SyncObjectPool(obj=Plain)\np.put(p.get_new_obj())",
                "syncpool_py",
                "syncpool-py",
            ),
        ),
    )


def peer_with_group() -> Group:
    """The libraries that offer a context manager, beside ``borrow()``."""
    return Group(
        PEER_WITH_GROUP,
        (
            Case(
                "peer_with_shardpool",
                "shardpool ObjectPool.borrow()",
                WITH.format("p.borrow"),
                f"{PLAIN}{OBJECT_POOL}p = ObjectPool(Plain)\np.put(p.get())",
                shardpool=True,
            ),
            _peer(
                "peer_with_object_pool",
                "object-pool item()",
                WITH.format("p.item"),
                "from object_pool import ObjectPool\np = ObjectPool(Plain)",
                "object_pool",
                "object-pool",
            ),
            _peer(
                "peer_with_fastalloc",
                "fastalloc allocate()",
                WITH.format("p.allocate"),
                "from fastalloc import ThreadSafePool\np = ThreadSafePool(Plain, 1024)",
                "fastalloc",
                "fastalloc",
            ),
        ),
    )


def gil_group() -> Group:
    """What leaving the interpreter costs, beside the work that justifies it."""
    zeroing = f"{BLOCK_POOL}p = BlockPool(zero='release')\np.get(n).release()"
    return Group(
        "GIL policy: a detach+attach beside the work it must pay for",
        (
            Case(
                "gil_attached",
                "call into the extension (attached)",
                "f()",
                "from shardpool._core import _attached_noop as f",
                shardpool=True,
            ),
            Case(
                "gil_detached",
                "call that detaches and re-attaches",
                "f()",
                "from shardpool._core import _detached_noop as f",
                shardpool=True,
            ),
            Case(
                "gil_get_put",
                "ObjectPool get+put (stays attached)",
                "p.put(p.get())",
                f"{OBJECT_POOL}p = ObjectPool(object)\np.put(p.get())",
                shardpool=True,
            ),
            Case(
                "gil_zero_64kib",
                "zeroing 64 KiB (attached: below 256 KiB)",
                "p.get(n).release()",
                f"n = 65536\n{zeroing}",
                shardpool=True,
            ),
            Case(
                "gil_zero_1mib",
                "zeroing 1 MiB (detached)",
                "p.get(n).release()",
                f"n = 1 << 20\n{zeroing}",
                shardpool=True,
            ),
        ),
    )


def peers() -> list[Case]:
    return [c for g in (peer_group(), peer_with_group()) for c in g.cases if c.requires]
