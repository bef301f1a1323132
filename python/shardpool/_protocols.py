"""Protocols that pooled objects may follow."""

from typing import Protocol, runtime_checkable


@runtime_checkable
class Resetter(Protocol):
    """An object that can clear its own state for reuse.

    A pool created without ``reset=`` calls ``obj.reset()`` on every object
    whose class defines a callable ``reset`` when the object comes back
    (``reset_on="put"``, the default) or before it is handed out again
    (``reset_on="get"``). If ``reset()`` raises, the object is destroyed and
    the exception propagates.
    """

    def reset(self) -> None:
        """Return the object to the state of a fresh one."""
