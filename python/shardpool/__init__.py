"""Thread-safe, sharded object pools and byte-block pools, with a Rust core.

- ``ObjectPool`` reuses arbitrary Python objects: ``get()`` hands out an idle
  object (or makes one with your factory), ``put()`` gives it back, and
  ``borrow()`` does both around a ``with`` block.
- ``TieredPool`` does the same for objects of several sizes (tiers).
- ``BlockPool`` hands out ``Block`` objects: pooled, aligned byte memory,
  zero-copy through the buffer protocol (``recv_into``, ``numpy.frombuffer``).
- ``BufferPool`` hands out growable ``Buffer`` objects for building output.

Pools are safe to share between threads, never hold the GIL while they wait,
and count what they do (``stats()``).

Example::

    from shardpool import ObjectPool

    pool = ObjectPool(bytearray, max_idle=64)
    with pool.borrow() as buf:
        buf += b"hello"
"""

from shardpool._aio import AsyncBorrow
from shardpool._core import (
    DEFAULT_MAX_IDLE,
    Block,
    BlockClassStats,
    BlockPool,
    BlockPoolStats,
    Borrow,
    Buffer,
    BufferPool,
    ObjectPool,
    PoolClosed,
    PoolStats,
    PoolTimeout,
    TieredPool,
    __version__,
)
from shardpool._gc import trim_on_gc
from shardpool._protocols import Resetter

__all__ = [
    "DEFAULT_MAX_IDLE",
    "AsyncBorrow",
    "Block",
    "BlockClassStats",
    "BlockPool",
    "BlockPoolStats",
    "Borrow",
    "Buffer",
    "BufferPool",
    "ObjectPool",
    "PoolClosed",
    "PoolStats",
    "PoolTimeout",
    "Resetter",
    "TieredPool",
    "__version__",
    "trim_on_gc",
]
