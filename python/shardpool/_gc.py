"""Optional trimming of idle pooled memory after full garbage collections.

A full collection (generation 2) is the interpreter's sign that it is
cleaning up; a pool registered here gives back its idle objects or memory
at the same moment, down to what it was asked to keep. Off by default: a
pool keeps what it holds until it is trimmed, cleared or closed.
"""

from __future__ import annotations

import gc
import operator
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, SupportsIndex


class _Trimmable(Protocol):
    def trim(self, keep: int = 0, /) -> int: ...


_lock = threading.Lock()
# id(pool) -> (weak reference to the pool, how much it keeps). A plain dict
# under a lock, not the GIL: the callback may run in any thread.
_registered: dict[int, tuple[weakref.ref[Any], int]] = {}
_installed = False


def _after_fork_in_child() -> None:
    """A child process has only the thread that forked: if another thread
    held the lock at that moment, it would stay held for ever there (and
    the child's next full collection would hang), so the child starts with
    a new one."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_collection(phase: str, info: dict[str, Any]) -> None:
    if phase != "stop" or info.get("generation") != 2:
        return
    with _lock:
        entries = list(_registered.items())
    for key, (ref, keep) in entries:
        pool = ref()
        if pool is None:
            with _lock:
                if _registered.get(key, (None,))[0] is ref:
                    del _registered[key]
            continue
        if not pool.closed:
            pool.trim(keep)


def trim_on_gc(pool: _Trimmable, *, keep: SupportsIndex = 0) -> Callable[[], None]:
    """Trim ``pool`` after every full garbage collection (``gc.collect()``,
    or the interpreter's own generation-2 collections).

    ``keep`` is passed to ``pool.trim()``: idle objects kept (``ObjectPool``,
    ``TieredPool`` per tier, ``BufferPool``) or idle bytes kept
    (``BlockPool``). The pool is held by a weak reference, so registering it
    does not keep it alive. Registering a pool again replaces its ``keep``.

    Returns a function that stops the trimming for this pool.

    Raises:
        TypeError: ``pool`` has no ``trim`` method, or ``keep`` is not an int.
        ValueError: ``keep`` is negative.
    """
    global _installed
    if not callable(getattr(pool, "trim", None)):
        raise TypeError(f"pool must be a shardpool pool, got {type(pool).__name__}")
    if isinstance(keep, bool):
        raise TypeError("keep must be an int, got bool")
    try:
        # What every size of the package accepts: anything operator.index does.
        kept = operator.index(keep)
    except TypeError:
        raise TypeError(f"keep must be an int, got {type(keep).__name__}") from None
    if kept < 0:
        raise ValueError(f"keep must be non-negative, got {kept}")
    key = id(pool)
    ref = weakref.ref(pool)
    with _lock:
        _registered[key] = (ref, kept)
        if not _installed:
            gc.callbacks.append(_after_collection)
            _installed = True

    def stop() -> None:
        with _lock:
            if _registered.get(key, (None,))[0] is ref:
                del _registered[key]

    return stop
