"""Thread-safe, sharded object pools for Python, with a Rust core.

``ObjectPool`` reuses arbitrary Python objects: ``get()`` hands out an idle
object (or makes one with your factory), ``put()`` gives it back, and
``borrow()`` does both around a ``with`` block. Pools are safe to share
between threads, never hold the GIL while they wait, and count what they do
(``stats()``).

Example::

    from shardpool import ObjectPool

    pool = ObjectPool(bytearray, max_idle=64)
    with pool.borrow() as buf:
        buf += b"hello"
"""

from shardpool._core import (
    DEFAULT_MAX_IDLE,
    Borrow,
    ObjectPool,
    PoolClosed,
    PoolStats,
    PoolTimeout,
    __version__,
)
from shardpool._protocols import Resetter

__all__ = [
    "DEFAULT_MAX_IDLE",
    "Borrow",
    "ObjectPool",
    "PoolClosed",
    "PoolStats",
    "PoolTimeout",
    "Resetter",
    "__version__",
]
