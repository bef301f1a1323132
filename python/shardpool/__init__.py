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
    PoolTooBusy,
    TieredPool,
    __version__,
)

# typing.TYPE_CHECKING without importing typing (mypy and pyright read the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from shardpool._aio import AsyncBorrow
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
    "PoolTooBusy",
    "Resetter",
    "TieredPool",
    "__version__",
    "trim_on_gc",
]

if not TYPE_CHECKING:
    # Loaded on first use, so that `import shardpool` stays cheap: asyncio
    # alone costs several times the rest of the package, and typing
    # (Protocol) most of what is left. Hidden from type checkers, which would
    # otherwise accept any name as an attribute of the module.
    _LAZY = {
        "AsyncBorrow": "shardpool._aio",
        "Resetter": "shardpool._protocols",
        "trim_on_gc": "shardpool._gc",
    }

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'shardpool' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next look-up is a plain global
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


del TYPE_CHECKING
