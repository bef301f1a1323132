"""Adversarial checks of a Borrow holding its pool's state (a hidden,
collector-tracked ``_ObjectPoolState`` / ``_TieredPoolState``), and of spare
Borrows untracked by the collector while they sit in a slot, the state
showing what they hold (src/python/borrow.rs, src/python/borrow/spares.rs).

What they check that others do not: that the collector never finds a state
unreachable while something outside the garbage still reaches it through a
spare, that every cycle through pool, state, hooks, objects and Borrows is
collected while nothing reachable is cleared, and that the paths where a
spare enters or leaves a slot (a refused offer, close() or the pool object's
end during an exit, a collection run from a hook) never track a Borrow twice
(a fatal error of CPython's) or show a reference twice. Scenarios that could
crash the interpreter run in a fresh one (``run_script``)."""

from __future__ import annotations

import gc
import sys
import sysconfig
import textwrap
from typing import Any

import pytest

from shardpool import ObjectPool, TieredPool

from helpers import run_script

GIL_BUILD = not sysconfig.get_config_var("Py_GIL_DISABLED")


def state_of(pool: Any) -> Any:
    """The pool's hidden state, as the collector sees it."""
    (state,) = [r for r in gc.get_referents(pool) if type(r).__name__.endswith("PoolState")]
    return state


class Owner:
    """An object holding its pool, whose factory is its bound method (the
    pattern of a class that pools what it makes): a cycle through the pool's
    state."""

    def __init__(self, tiered: bool = False) -> None:
        self.pool: Any = (
            TieredPool(self.make, [8], size_of=self.size) if tiered else ObjectPool(self.make)
        )

    def make(self, *_: object) -> list[object]:
        return []

    def size(self, _obj: object) -> int:
        return 8


def borrow(pool: Any) -> Any:
    return pool.borrow(8) if isinstance(pool, TieredPool) else pool.borrow()


@pytest.mark.parametrize("tiered", [False, True], ids=["ObjectPool", "TieredPool"])
def test_a_spare_reachable_through_a_kept_bound_exit_keeps_its_state_from_the_collector(
    tiered: bool,
) -> None:
    # With a GIL before 3.14, an exit whose Borrow's only counted reference
    # is the bound ``__exit__`` it was called through offers the Borrow as a
    # spare (refcount 1), though that bound method, kept in a variable,
    # still reaches it. Untracked in its slot, the spare is then invisible to
    # the collector: the state must not show its reference as one from
    # inside a cycle, or a collection finds the state unreachable while this
    # Borrow still uses it, and clears it (its checked ledger forgotten, so
    # the block's put was refused as foreign).
    owner = Owner(tiered)
    pool = owner.pool
    manual = borrow(pool)
    manual.__enter__()
    exit_ = manual.__exit__
    del manual
    exit_(None, None, None)
    kept = exit_.__self__
    with kept as obj:
        del pool, owner
        gc.collect()
        assert obj == []
    with kept as obj2:  # and the state still lends and takes back
        assert obj2 is obj
