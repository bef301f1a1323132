"""What users write by hand, and adapters for the pool libraries compared.

The bench's cases import these by name in their setup source, so each case
builds the same objects in the wall-clock mode (one process) and in the
instruction mode (a fresh interpreter per case).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Generator
from typing import Any


class MinimalPool:
    """The smallest useful pure-Python pool: a deque of idle objects.

    ``deque.pop`` and ``deque.append`` are atomic under the GIL, so this is
    also the fastest thread-safe pool one can write in Python (without
    bounds, resets, stats or any check).
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._idle: deque[Any] = deque()
        self._factory = factory

    def get(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            return self._factory()

    def put(self, obj: Any) -> None:
        self._idle.append(obj)


class ClassBorrow:
    """A hand-written class-based context manager over ``MinimalPool``."""

    def __init__(self, pool: MinimalPool) -> None:
        self.pool = pool

    def __enter__(self) -> Any:
        self.obj = self.pool.get()
        return self.obj

    def __exit__(self, *exc: object) -> None:
        self.pool.put(self.obj)


@contextlib.contextmanager
def generator_borrow(pool: MinimalPool) -> Generator[Any, None, None]:
    obj = pool.get()
    try:
        yield obj
    finally:
        pool.put(obj)


class Plain:
    """An ordinary instance, for the pool libraries that want a class."""


def pond_pool() -> tuple[Any, Any]:
    """A pondpond ``Pond`` with a factory of ``Plain`` objects, and the factory.

    pondpond wants a factory class with four hooks; these do nothing, as
    shardpool's pools in the comparison have no hooks either.
    """
    from pond import Pond, PooledObject, PooledObjectFactory

    class Factory(PooledObjectFactory):  # type: ignore[misc, unused-ignore]
        def createInstance(self) -> Any:
            return PooledObject(Plain())

        def destroy(self, pooled_object: Any) -> None:
            pass

        def reset(self, pooled_object: Any, **kwargs: Any) -> Any:
            return pooled_object

        def validate(self, pooled_object: Any) -> bool:
            return True

    pond = Pond(borrowed_timeout=60, time_between_eviction_runs=-1)
    factory = Factory(pooled_maxsize=8, least_one=True)
    pond.register(factory)
    return pond, factory
