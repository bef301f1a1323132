"""asyncio support: ``aget()`` and ``aborrow()`` of the object pools.

A task that must wait for a full bounded pool joins the pool's queue of
waiters (the same queue as threads blocked in ``get()``) through a
``_Waiting`` from the extension, and asks to be told when its wait is
decided. The thread that decides it (whoever puts an object back, or closes
the pool) schedules the wake-up on the task's event loop with
``call_soon_threadsafe``; the event loop itself never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

from shardpool._core import _Waiting

_T = TypeVar("_T")


def _wake(loop: asyncio.AbstractEventLoop, waker: asyncio.Future[None], step: _Waiting) -> None:
    """Runs in whichever thread decided the wait. The pool drops this
    callback once it ran (or once the wait is abandoned), so the cycle it
    closes (callback, wait, callback) does not outlive the wait."""
    try:
        loop.call_soon_threadsafe(_resolve, waker)
    except RuntimeError:
        # The loop was closed with the task still waiting: no one will take
        # the grant, so give it back (to the next waiter, or idle).
        step.abandon()


def _resolve(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


async def aget(pool: Any, timeout: float | None) -> Any:
    """``await pool.aget(timeout)`` for an ``ObjectPool``; ``timeout`` is
    resolved already (the call's, or the pool's default): ``None`` waits
    without limit."""
    step = pool._get_or_wait()
    if not isinstance(step, _Waiting):
        return step
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while isinstance(step, _Waiting):
        waker: asyncio.Future[None] = loop.create_future()
        step.on_decided(functools.partial(_wake, loop, waker, step))
        try:
            async with asyncio.timeout_at(deadline):
                await waker
        except TimeoutError:
            step.abandon(timed_out=True)
            raise pool._timeout_error(timeout) from None
        except BaseException:
            # Cancelled (or interrupted): give back anything granted
            # meanwhile; counted as cancelled, not as a timeout.
            step.abandon()
            raise
        step = step.finish()
    return step


async def aget_sized(pool: Any, size: int) -> Any:
    """``await pool.aget(size)`` for a ``TieredPool``: its tiers never make a
    caller wait, so this is ``get(size)`` run inside the coroutine."""
    return pool.get(size)


# An AsyncBorrow's state (`_held`).
_IDLE, _ENTERING, _HOLDING = 0, 1, 2


class AsyncBorrow(Generic[_T]):
    """The async context manager returned by ``aborrow()``: ``aget()`` on
    entry, ``put()`` on exit (also when the block raises or the task is
    cancelled). One per ``async with``."""

    __slots__ = ("_args", "_entry", "_held", "_lock", "_obj", "_pool")

    def __init__(self, pool: Any, *args: Any) -> None:
        if not callable(getattr(pool, "aget", None)):
            raise TypeError(f"pool must be an ObjectPool or TieredPool, got {type(pool).__name__}")
        self._pool = pool
        self._args = args
        self._obj: Any = None
        # The block's entry in the pool's record of lent objects (for its exit).
        self._entry = 0
        # _IDLE, _ENTERING (the entry waits for its object: an exit now is
        # refused, as a Borrow's is during its entry) or _HOLDING.
        self._held = _IDLE
        # Guards the state, not the wait: no reliance on the GIL.
        self._lock = threading.Lock()

    async def __aenter__(self) -> _T:
        with self._lock:
            if self._held != _IDLE:
                raise RuntimeError(
                    "this aborrow() is already in use; call pool.aborrow() for each async with"
                )
            self._held = _ENTERING
        try:
            obj = await self._pool.aget(*self._args)
        except BaseException:
            with self._lock:
                self._held = _IDLE
            raise
        # So that a discard in the block makes the exit do nothing more.
        entry = self._pool._note_lent(obj)
        with self._lock:
            self._obj, self._entry, self._held = obj, entry, _HOLDING
        return obj  # type: ignore[no-any-return]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        with self._lock:
            if self._held != _HOLDING:
                raise RuntimeError("aborrow() exited without being entered")
            obj, entry, self._obj, self._held = self._obj, self._entry, None, _IDLE
        # A put, or a discard when the block raised one of the pool's
        # `discard_on`; nothing if the block discarded the object itself.
        self._pool._end_borrow(obj, exc, entry)
        return False

    def __repr__(self) -> str:
        state = ("idle", "entering", "holding")[self._held]
        return f"<AsyncBorrow {state} from {self._pool!r}>"
