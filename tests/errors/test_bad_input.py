"""Bad input to every public entry point, from one table.

Each row of ``TABLE`` names an entry point (a class and one of its public
methods, properties or API dunders, ``__init__`` for the constructor, or a
module-level function), a bad call (wrong types, negative and zero sizes,
sizes above limits, NaN and negative timeouts, non-callables, objects of
another pool, double put, double release, release with live exports, use
after release, operations after close), and what must happen: an exception
of the right built-in type whose message (or note) matches a fragment that
names the argument or the value, or a documented no-op. Every row runs
against a fresh ``World`` (pools of every kind, with objects idle and out,
blocks and buffers held, exported, released, and pools closed), and the
observable state of the whole world must be the same afterwards.

``test_every_public_entry_point_has_a_row`` enumerates the public API
(``shardpool.__all__``, ``dir()`` of every public class, API dunders
included) and fails for any entry point without a row: a new method cannot
be added without saying what it does with bad input.

``test_no_row_crashes_the_interpreter`` runs the whole table in a child
process, so that a row that aborts the interpreter (as ``get_many(2**40)``
once did) is reported by name instead of killing the test run.

Also here: ``close()`` called by several threads at once while others use
the pool (every kind), and the documented acceptance of a double put by an
unchecked pool.

This is the one table of bad arguments: the tests of each pool kind have
none of their own (a change to what an argument takes is one edit, here).
"""

from __future__ import annotations

import asyncio
import copy
import decimal
import fractions
import math
import pickle
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import shardpool
from shardpool import (
    AsyncBorrow,
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
    Resetter,
    TieredPool,
    trim_on_gc,
)

NAN = float("nan")


class Thing:
    """A pooled object with a size (for the tiered pool)."""

    def __init__(self, size: int = 0) -> None:
        self.size = size
        self.data: list = []

    def __len__(self) -> int:
        return self.size


class World:
    """Pools of every kind in every interesting state, built fresh per row."""

    def __init__(self) -> None:
        self.made = 0  # factory calls: a refused call must make nothing

        def factory(size: int = 0) -> Thing:
            self.made += 1
            return Thing(size)

        self.factory = factory
        # ObjectPool: checked, two idle, one out; one object returned already.
        self.objects = ObjectPool(factory, checked=True, name="objects", shards=2)
        self.returned, spare, self.held = (self.objects.get() for _ in range(3))
        self.objects.put(self.returned)
        self.objects.put(spare)
        self.bounded = ObjectPool(factory, max_size=2)
        self.bounded_held = self.bounded.get()
        self.bounded.put(self.bounded.get())
        self.stranger = Thing()  # never handed out
        # TieredPool (checked): one idle, returned already; one out.
        self.tiered = TieredPool(factory, [16, 256], name="tiered")
        self.tiered_held = self.tiered.get(10)
        self.tiered_returned = self.tiered.get(100)
        self.tiered.put(self.tiered_returned)
        self.negative = Thing(-1)  # size_of (len) refuses it
        # BlockPool: a block held, one with a live view, one released, one
        # left in a with-block while a view is alive (release pending).
        self.blocks = BlockPool(classes=[64, 4096], name="blocks")
        self.block = self.blocks.get(100)
        self.viewed = self.blocks.get(10)
        self.view = memoryview(self.viewed)
        self.released_block = self.blocks.get(50)
        self.released_block.release()
        self.pending_block = self.blocks.get(20)
        self.pending_view = memoryview(self.pending_block)
        self.pending_block.__exit__(None, None, None)
        self.other_blocks = BlockPool(classes=[64])
        self.foreign_block = self.other_blocks.get(10)
        # BufferPool: the same states for buffers.
        self.buffers = BufferPool(name="buffers")
        self.buf = self.buffers.get()
        self.buf.write(b"kept")
        self.exported = self.buffers.get()
        self.exported.write(b"exported")
        self.export = memoryview(self.exported)
        self.released_buf = self.buffers.get()
        self.released_buf.release()
        self.pending_buf = self.buffers.get()
        self.pending_export = memoryview(self.pending_buf)
        self.pending_buf.__exit__(None, None, None)
        self.other_buffers = BufferPool()
        self.foreign_buf = self.other_buffers.get()
        # Closed pools, each with something still out.
        self.closed_objects = ObjectPool(factory, checked=True)
        self.closed_objects_held = self.closed_objects.get()
        self.closed_objects.close()
        self.closed_tiered = TieredPool(factory, [16])
        self.closed_tiered_held = self.closed_tiered.get(1)
        self.closed_tiered.close()
        self.closed_blocks = BlockPool()
        self.closed_blocks.close()
        self.closed_buffers = BufferPool()
        self.closed_buffers.close()
        # Context managers and snapshots.
        self.borrow = self.objects.borrow()
        self.lender = ObjectPool(factory)  # for the borrows held open
        self.entered = self.lender.borrow()
        self.entered_obj = self.entered.__enter__()
        self.closed_borrow = self.closed_objects.borrow()
        self.aborrow = self.objects.aborrow()
        self.aentered = self.lender.aborrow()
        self.aentered_obj = asyncio.run(self.aentered.__aenter__())
        self.closed_aborrow = self.closed_objects.aborrow()
        self.pool_stats = self.objects.stats()
        self.block_stats = self.blocks.stats()
        self.class_stats = self.block_stats.classes[0]

    def pools(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if hasattr(v, "stats")}

    def snapshot(self) -> dict:
        """Everything observable, without changing anything."""
        state: dict = {"made": self.made, "trimmed_on_gc": len(shardpool._gc._registered)}
        for name, pool in self.pools().items():
            s = pool.stats()
            state[name] = (s.as_dict(), len(pool), pool.closed)
            if isinstance(pool, TieredPool):
                state[name + ".tiers"] = {k: v.as_dict() for k, v in pool.tier_stats().items()}
        for name, value in vars(self).items():
            if isinstance(value, Block | Buffer):
                state[name] = (value.released, attempt(lambda v=value: bytes(v)))
            elif isinstance(value, Thing):
                state[name] = (value.size, list(value.data))
            elif isinstance(value, PoolStats | BlockPoolStats):
                state[name] = value.as_dict()
        state["class_stats"] = {
            k: getattr(self.class_stats, k) for k in dir(self.class_stats) if k[0] != "_"
        }
        state["views"] = bytes(self.view), bytes(self.pending_view), bytes(self.export)
        return state

    def close(self) -> None:
        for view in (self.view, self.pending_view, self.export, self.pending_export):
            view.release()
        for thing in (self.block, self.viewed, self.foreign_block, self.buf, self.exported):
            thing.release()
        self.foreign_buf.release()
        self.entered.__exit__(None, None, None)
        asyncio.run(self.aentered.__aexit__(None, None, None))
        for pool in self.pools().values():
            pool.close()


def attempt(fn: Callable[[], object]) -> object:
    """The value of `fn()`, or the name of the exception it raised."""
    try:
        return fn()
    except Exception as e:
        return type(e).__name__


def run(coro) -> object:
    return asyncio.run(coro)


def set_attr(name: str) -> Callable[[object], None]:
    def assign(target: object) -> None:
        setattr(target, name, getattr(target, name))

    return assign


@dataclass(frozen=True)
class Row:
    owner: str  # a public class, or "shardpool" for a module-level function
    entry: str  # a member of it; "__init__" is the constructor
    case: str
    call: Callable[[World], object]
    error: type[BaseException] | None  # None: a documented no-op
    match: str = ""  # must occur in the message (or its notes)
    returns: object = None  # what a no-op returns

    @property
    def id(self) -> str:
        return f"{self.owner}.{self.entry}[{self.case}]"


def rows_for_properties(owner: str, target: Callable[[World], object], names: str) -> list[Row]:
    """Assigning to a read-only property: AttributeError naming it."""
    return [
        Row(owner, name, "assign", lambda w, n=name: set_attr(n)(target(w)), AttributeError, name)
        for name in names.split()
    ]


def no_args(owner: str, target: Callable[[World], object], names: str) -> list[Row]:
    """A method that takes no arguments, given one: TypeError naming it
    (``__len__`` is a slot wrapper: "expected 0 arguments")."""
    return [
        Row(
            owner,
            name,
            "extra argument",
            lambda w, n=name: getattr(target(w), n)(1),
            TypeError,
            "expected 0 arguments" if name == "__len__" else re.escape(f"{name}()"),
        )
        for name in names.split()
    ]


def obj(w: World) -> ObjectPool:
    return w.objects


def tiered(w: World) -> TieredPool:
    return w.tiered


def blocks(w: World) -> BlockPool:
    return w.blocks


def buffers(w: World) -> BufferPool:
    return w.buffers


async def async_factory() -> Thing:
    return Thing()


async def async_hook(obj: object) -> bool:
    return True


def new_object_pool(**kwargs) -> Callable[[World], object]:
    return lambda w: ObjectPool(w.factory, **kwargs)


def new_tiered_pool(tiers=(16,), **kwargs) -> Callable[[World], object]:
    return lambda w: TieredPool(w.factory, tiers, **kwargs)


OP, T, BP, B, FP, F = "ObjectPool", "TieredPool", "BlockPool", "Block", "BufferPool", "Buffer"

TABLE: list[Row] = [
    # --- ObjectPool: the constructor ---
    Row(OP, "__init__", "factory=5", lambda w: ObjectPool(5), TypeError, "factory"),
    Row(OP, "__init__", "factory=None", lambda w: ObjectPool(None), TypeError, "factory"),
    Row(OP, "__init__", "no factory", lambda w: ObjectPool(), TypeError, "factory"),
    Row(OP, "__init__", "factory=", lambda w: ObjectPool(factory=list), TypeError, "factory"),
    Row(
        OP, "__init__", "positional option", lambda w: ObjectPool(list, 3), TypeError, "positional"
    ),
    Row(OP, "__init__", "unknown option", new_object_pool(max_items=3), TypeError, "max_items"),
    Row(OP, "__init__", "max_idle=-1", new_object_pool(max_idle=-1), ValueError, "max_idle"),
    Row(OP, "__init__", "max_idle=1.5", new_object_pool(max_idle=1.5), TypeError, "max_idle"),
    Row(OP, "__init__", "max_idle=True", new_object_pool(max_idle=True), TypeError, "max_idle"),
    Row(
        OP,
        "__init__",
        "max_idle>limit",
        new_object_pool(max_idle=2**24 + 1),
        ValueError,
        "max_idle",
    ),
    Row(OP, "__init__", "max_idle=2**70", new_object_pool(max_idle=2**70), ValueError, "max_idle"),
    Row(OP, "__init__", "max_size=0", new_object_pool(max_size=0), ValueError, "max_size"),
    Row(OP, "__init__", "max_size=-2", new_object_pool(max_size=-2), ValueError, "max_size"),
    Row(OP, "__init__", "max_size='2'", new_object_pool(max_size="2"), TypeError, "max_size"),
    Row(OP, "__init__", "reset=1", new_object_pool(reset=1), TypeError, "reset"),
    Row(OP, "__init__", "reset=True", new_object_pool(reset=True), TypeError, "reset"),
    Row(OP, "__init__", "validate='x'", new_object_pool(validate="x"), TypeError, "validate"),
    Row(OP, "__init__", "validate=False", new_object_pool(validate=False), TypeError, "validate"),
    Row(OP, "__init__", "destroy=3", new_object_pool(destroy=3), TypeError, "destroy"),
    Row(OP, "__init__", "reset_on='later'", new_object_pool(reset_on="x"), ValueError, "reset_on"),
    Row(OP, "__init__", "reset_on=1", new_object_pool(reset_on=1), TypeError, "reset_on"),
    Row(
        OP,
        "__init__",
        "idle_timeout=nan",
        new_object_pool(idle_timeout=NAN),
        ValueError,
        "idle_timeout",
    ),
    Row(
        OP,
        "__init__",
        "idle_timeout=-1",
        new_object_pool(idle_timeout=-1),
        ValueError,
        "idle_timeout",
    ),
    Row(
        OP,
        "__init__",
        "idle_timeout=0",
        new_object_pool(idle_timeout=0),
        ValueError,
        "idle_timeout",
    ),
    Row(
        OP,
        "__init__",
        "idle_timeout='5'",
        new_object_pool(idle_timeout="5"),
        TypeError,
        "idle_timeout",
    ),
    Row(OP, "__init__", "prefill=-1", new_object_pool(prefill=-1), ValueError, "prefill"),
    Row(
        OP,
        "__init__",
        "prefill>max_idle",
        new_object_pool(prefill=3, max_idle=2),
        ValueError,
        "prefill",
    ),
    Row(OP, "__init__", "shards=0", new_object_pool(shards=0), ValueError, "shards"),
    Row(OP, "__init__", "shards=1025", new_object_pool(shards=1025), ValueError, "shards"),
    Row(OP, "__init__", "shards=2.0", new_object_pool(shards=2.0), TypeError, "shards"),
    Row(OP, "__init__", "checked=1", new_object_pool(checked=1), TypeError, "checked"),
    Row(OP, "__init__", "name=5", new_object_pool(name=5), TypeError, "name"),
    Row(OP, "__init__", "track='yes'", new_object_pool(track="yes"), TypeError, "track"),
    Row(OP, "__init__", 'max_idle="3"', new_object_pool(max_idle="3"), TypeError, "max_idle"),
    Row(OP, "__init__", "max_idle=10**9", new_object_pool(max_idle=10**9), ValueError, "max_idle"),
    Row(OP, "__init__", "max_size=2.0", new_object_pool(max_size=2.0), TypeError, "max_size"),
    Row(OP, "__init__", "max_size=False", new_object_pool(max_size=False), TypeError, "max_size"),
    Row(OP, "__init__", 'reset="reset"', new_object_pool(reset="reset"), TypeError, "reset"),
    Row(OP, "__init__", "validate=1", new_object_pool(validate=1), TypeError, "validate"),
    Row(OP, "__init__", 'destroy="x"', new_object_pool(destroy="x"), TypeError, "destroy"),
    Row(
        OP,
        "__init__",
        'reset_on="later"',
        new_object_pool(reset_on="later"),
        ValueError,
        "reset_on",
    ),
    Row(OP, "__init__", 'reset_on="PUT"', new_object_pool(reset_on="PUT"), ValueError, "reset_on"),
    Row(
        OP,
        "__init__",
        "idle_timeout=True",
        new_object_pool(idle_timeout=True),
        TypeError,
        "idle_timeout",
    ),
    Row(OP, "__init__", "prefill=1.0", new_object_pool(prefill=1.0), TypeError, "prefill"),
    Row(
        OP,
        "__init__",
        "prefill=3,max_size=2",
        new_object_pool(prefill=3, max_size=2),
        ValueError,
        "prefill",
    ),
    Row(OP, "__init__", "shards=100_000", new_object_pool(shards=100_000), ValueError, "shards"),
    Row(OP, "__init__", 'shards="2"', new_object_pool(shards="2"), TypeError, "shards"),
    Row(OP, "__init__", 'checked="yes"', new_object_pool(checked="yes"), TypeError, "checked"),
    Row(OP, "__init__", "timeout=-1", new_object_pool(timeout=-1), ValueError, "timeout"),
    Row(OP, "__init__", "timeout=nan", new_object_pool(timeout=NAN), ValueError, "timeout"),
    Row(OP, "__init__", "timeout='5'", new_object_pool(timeout="5"), TypeError, "timeout"),
    Row(OP, "__init__", "timeout=True", new_object_pool(timeout=True), TypeError, "timeout"),
    Row(
        OP,
        "__init__",
        "timeout=10**400",
        new_object_pool(max_size=2, timeout=10**400),
        OverflowError,
        "timeout",
    ),
    Row(
        OP,
        "__init__",
        "factory=async def",
        lambda w: ObjectPool(async_factory),
        TypeError,
        "factory.*coroutine function",
    ),
    Row(
        OP,
        "__init__",
        "reset=async def",
        new_object_pool(reset=async_hook),
        TypeError,
        "reset.*coroutine function",
    ),
    Row(
        OP,
        "__init__",
        "validate=async def",
        new_object_pool(validate=async_hook),
        TypeError,
        "validate.*coroutine function",
    ),
    Row(
        OP,
        "__init__",
        "destroy=async def",
        new_object_pool(destroy=async_hook),
        TypeError,
        "destroy.*coroutine function",
    ),
    # --- ObjectPool: methods ---
    Row(OP, "get", "timeout=-1", lambda w: w.objects.get(timeout=-1), ValueError, "timeout"),
    Row(OP, "get", "timeout=nan", lambda w: w.objects.get(timeout=NAN), ValueError, "timeout"),
    Row(OP, "get", "timeout=-inf", lambda w: w.objects.get(-math.inf), ValueError, "timeout"),
    Row(OP, "get", "timeout='1'", lambda w: w.objects.get(timeout="1"), TypeError, "timeout"),
    Row(OP, "get", "timeout=True", lambda w: w.objects.get(timeout=True), TypeError, "timeout"),
    Row(
        OP,
        "get",
        "timeout=Decimal(NaN)",
        lambda w: w.objects.get(timeout=decimal.Decimal("NaN")),
        ValueError,
        "timeout",
    ),
    Row(
        OP,
        "get",
        "timeout=np.float64(-1)",
        lambda w: w.objects.get(timeout=np.float64(-1)),
        ValueError,
        "timeout",
    ),
    Row(
        OP,
        "get",
        "timeout=10**400",
        lambda w: w.objects.get(timeout=10**400),
        OverflowError,
        "timeout",
    ),
    Row(OP, "get", "timeout=b'1'", lambda w: w.objects.get(timeout=b"1"), TypeError, "timeout"),
    Row(
        OP,
        "get",
        "timeout=np.True_",
        lambda w: w.objects.get(timeout=np.True_),
        TypeError,
        "timeout",
    ),
    Row(OP, "get", "two arguments", lambda w: w.objects.get(1, 2), TypeError, "positional"),
    Row(OP, "get", "after close", lambda w: w.closed_objects.get(), PoolClosed, "closed"),
    Row(
        OP, "put", "never handed out", lambda w: w.objects.put(w.stranger), ValueError, "not handed"
    ),
    Row(OP, "put", "put twice", lambda w: w.objects.put(w.returned), ValueError, "not handed out"),
    Row(
        OP,
        "put",
        "of another pool",
        lambda w: w.objects.put(w.bounded_held),
        ValueError,
        "not hand",
    ),
    Row(
        OP, "put", "bounded, foreign", lambda w: w.bounded.put(w.stranger), ValueError, "not handed"
    ),
    Row(OP, "put", "no object", lambda w: w.objects.put(), TypeError, "obj"),
    Row(OP, "put", "obj= keyword", lambda w: w.objects.put(obj=w.held), TypeError, "obj"),
    Row(
        OP,
        "put",
        "after close, foreign",
        lambda w: w.closed_objects.put(w.stranger),
        ValueError,
        "not handed out",
    ),
    Row(
        OP,
        "discard",
        "never handed out",
        lambda w: w.objects.discard(w.stranger),
        ValueError,
        "not handed",
    ),
    Row(
        OP,
        "discard",
        "returned already",
        lambda w: w.objects.discard(w.returned),
        ValueError,
        "not handed out",
    ),
    Row(
        OP,
        "discard",
        "of another pool",
        lambda w: w.objects.discard(w.bounded_held),
        ValueError,
        "not hand",
    ),
    Row(
        OP,
        "discard",
        "bounded, foreign",
        lambda w: w.bounded.discard(w.stranger),
        ValueError,
        "not handed",
    ),
    Row(
        OP,
        "discard",
        "after close, foreign",
        lambda w: w.closed_objects.discard(w.stranger),
        ValueError,
        "not handed out",
    ),
    Row(OP, "discard", "no object", lambda w: w.objects.discard(), TypeError, "obj"),
    Row(OP, "discard", "obj= keyword", lambda w: w.objects.discard(obj=w.held), TypeError, "obj"),
    Row(
        OP,
        "__init__",
        "discard_on=instance",
        new_object_pool(discard_on=ValueError()),
        TypeError,
        "discard_on.*ValueError()",
    ),
    Row(
        OP,
        "__init__",
        "discard_on=int",
        new_object_pool(discard_on=int),
        TypeError,
        "discard_on.*int",
    ),
    Row(
        OP,
        "__init__",
        "discard_on=list",
        new_object_pool(discard_on=[KeyError]),
        TypeError,
        "discard_on.*KeyError",
    ),
    Row(
        OP,
        "__init__",
        "discard_on=(KeyError, 3)",
        new_object_pool(discard_on=(KeyError, 3)),
        TypeError,
        "discard_on.*3 is not an exception class",
    ),
    Row(
        OP,
        "__init__",
        "discard_on nested tuple",
        new_object_pool(discard_on=((KeyError,),)),
        TypeError,
        "discard_on",
    ),
    Row(
        OP,
        "__init__",
        "discard_on='ValueError'",
        new_object_pool(discard_on="ValueError"),
        TypeError,
        "discard_on.*'ValueError'",
    ),
    Row(OP, "borrow", "timeout=-1", lambda w: w.objects.borrow(timeout=-1), ValueError, "timeout"),
    Row(OP, "borrow", "timeout='x'", lambda w: w.objects.borrow(timeout="x"), TypeError, "timeout"),
    Row(OP, "aget", "timeout=-1", lambda w: run(w.objects.aget(timeout=-1)), ValueError, "timeout"),
    Row(OP, "aget", "timeout='x'", lambda w: w.objects.aget(timeout="x"), TypeError, "timeout"),
    Row(OP, "aget", "after close", lambda w: run(w.closed_objects.aget()), PoolClosed, "closed"),
    Row(OP, "aborrow", "timeout=nan", lambda w: w.objects.aborrow(NAN), ValueError, "timeout"),
    Row(OP, "aborrow", "timeout=[]", lambda w: w.objects.aborrow(timeout=[]), TypeError, "timeout"),
    Row(OP, "get_many", "n=-1", lambda w: w.objects.get_many(-1), ValueError, r"\bn\b"),
    Row(OP, "get_many", "n=1.0", lambda w: w.objects.get_many(1.0), TypeError, r"\bn\b"),
    Row(OP, "get_many", "n=None", lambda w: w.objects.get_many(None), TypeError, r"\bn\b"),
    Row(OP, "get_many", "n=True", lambda w: w.objects.get_many(True), TypeError, r"\bn\b"),
    Row(OP, "get_many", "n=2**64", lambda w: w.objects.get_many(2**64), ValueError, r"\bn\b"),
    Row(OP, "get_many", "n=2**40", lambda w: w.objects.get_many(2**40), MemoryError, r"\bn\b"),
    Row(OP, "get_many", "n>max_size", lambda w: w.bounded.get_many(3), ValueError, "max_size"),
    Row(
        OP,
        "get_many",
        "2**40 > max_size",
        lambda w: w.bounded.get_many(2**40),
        ValueError,
        "max_size",
    ),
    Row(OP, "get_many", "timeout=-1", lambda w: w.objects.get_many(1, -1), ValueError, "timeout"),
    Row(
        OP, "get_many", "after close", lambda w: w.closed_objects.get_many(1), PoolClosed, "closed"
    ),
    Row(
        OP,
        "get_many",
        "0 after close",
        lambda w: w.closed_objects.get_many(0),
        PoolClosed,
        "closed",
    ),
    Row(OP, "put_many", "not iterable", lambda w: w.objects.put_many(5), TypeError, "objs"),
    Row(
        OP,
        "put_many",
        "one never handed out",
        lambda w: w.objects.put_many([w.held, w.stranger]),
        ValueError,
        "not handed out",
    ),
    Row(
        OP,
        "put_many",
        "one twice",
        lambda w: w.objects.put_many([w.held, w.held]),
        ValueError,
        "not handed out",
    ),
    Row(
        OP,
        "put_many",
        "one returned already",
        lambda w: w.objects.put_many((w.held, w.returned)),
        ValueError,
        "not handed out",
    ),
    Row(OP, "trim", "keep=-1", lambda w: w.objects.trim(keep=-1), ValueError, "keep"),
    Row(OP, "trim", "keep=0.5", lambda w: w.objects.trim(keep=0.5), TypeError, "keep"),
    Row(OP, "trim", "keep=2**64", lambda w: w.objects.trim(2**64), ValueError, "keep"),
    # --- issue 15: min_size, max_lifetime, max_waiting, resize, reset_peak ---
    Row(OP, "__init__", "min_size=-1", new_object_pool(min_size=-1), ValueError, "min_size"),
    Row(OP, "__init__", "min_size='1'", new_object_pool(min_size="1"), TypeError, "min_size"),
    Row(OP, "__init__", "min_size=True", new_object_pool(min_size=True), TypeError, "min_size"),
    Row(
        OP,
        "__init__",
        "min_size > max_size",
        new_object_pool(max_size=2, min_size=3),
        ValueError,
        r"min_size must be at most max_size \(2\), got 3",
    ),
    Row(
        OP,
        "__init__",
        "min_size > max_idle",
        new_object_pool(max_idle=1, min_size=2),
        ValueError,
        r"min_size must be at most max_idle \(1\), got 2",
    ),
    Row(
        OP,
        "__init__",
        "max_lifetime=0",
        new_object_pool(max_lifetime=0),
        ValueError,
        "max_lifetime",
    ),
    Row(
        OP,
        "__init__",
        "max_lifetime=-1",
        new_object_pool(max_lifetime=-1),
        ValueError,
        "max_lifetime",
    ),
    Row(
        OP,
        "__init__",
        "max_lifetime=nan",
        new_object_pool(max_lifetime=NAN),
        ValueError,
        "max_lifetime",
    ),
    Row(
        OP,
        "__init__",
        "max_lifetime='5'",
        new_object_pool(max_lifetime="5"),
        TypeError,
        "max_lifetime",
    ),
    Row(
        OP,
        "__init__",
        "max_lifetime=True",
        new_object_pool(max_lifetime=True),
        TypeError,
        "max_lifetime",
    ),
    Row(
        OP,
        "__init__",
        "max_lifetime, checked=False",
        new_object_pool(max_lifetime=5, checked=False),
        ValueError,
        "max_lifetime needs a checked pool",
    ),
    Row(
        OP,
        "__init__",
        "max_waiting=-1",
        new_object_pool(max_size=1, max_waiting=-1),
        ValueError,
        "max_waiting",
    ),
    Row(
        OP,
        "__init__",
        "max_waiting='1'",
        new_object_pool(max_size=1, max_waiting="1"),
        TypeError,
        "max_waiting",
    ),
    Row(
        OP,
        "__init__",
        "max_waiting without max_size",
        new_object_pool(max_waiting=1),
        ValueError,
        "max_waiting needs max_size",
    ),
    Row(
        OP,
        "resize",
        "max_size, unbounded",
        lambda w: w.objects.resize(max_size=4),
        ValueError,
        "built without max_size",
    ),
    Row(OP, "resize", "max_size=0", lambda w: w.bounded.resize(max_size=0), ValueError, "max_size"),
    Row(
        OP, "resize", "max_size=-1", lambda w: w.bounded.resize(max_size=-1), ValueError, "max_size"
    ),
    Row(
        OP,
        "resize",
        "max_size='3'",
        lambda w: w.bounded.resize(max_size="3"),
        TypeError,
        "max_size",
    ),
    Row(
        OP,
        "resize",
        "min_size > max_size",
        lambda w: w.bounded.resize(min_size=3),
        ValueError,
        r"min_size must be at most max_size \(2\), got 3",
    ),
    Row(
        OP,
        "resize",
        "both, min_size > max_size",
        lambda w: w.bounded.resize(max_size=3, min_size=4),
        ValueError,
        "min_size",
    ),
    Row(
        OP, "resize", "min_size=-1", lambda w: w.objects.resize(min_size=-1), ValueError, "min_size"
    ),
    Row(
        OP,
        "resize",
        "min_size=1.5",
        lambda w: w.objects.resize(min_size=1.5),
        TypeError,
        "min_size",
    ),
    Row(OP, "resize", "positional", lambda w: w.bounded.resize(3), TypeError, "positional"),
    Row(
        OP,
        "resize",
        "closed pool",
        lambda w: w.closed_objects.resize(min_size=1),
        ValueError,
        "closed",
    ),
    Row(
        OP,
        "stats",
        "reset_peak='yes'",
        lambda w: w.objects.stats(reset_peak="yes"),
        TypeError,
        "reset_peak",
    ),
    *no_args(OP, obj, "wait_histogram"),
    Row(OP, "close", "after close", lambda w: w.closed_objects.close(), None),
    Row(OP, "outstanding", "track=False", lambda w: w.objects.outstanding(), RuntimeError, "track"),
    *no_args(OP, obj, "stats clear close outstanding __len__ __enter__"),
    Row(OP, "__exit__", "no arguments", lambda w: w.objects.__exit__(), TypeError, "exc"),
    *rows_for_properties(
        OP,
        obj,
        "closed max_idle max_size shards idle_timeout reset_on checked factory name track"
        " discard_on timeout min_size max_lifetime max_waiting",
    ),
    Row(
        OP,
        "__class_getitem__",
        "no item",
        lambda w: ObjectPool.__class_getitem__(),
        TypeError,
        "item",
    ),
    Row(OP, "__reduce__", "pickle", lambda w: pickle.dumps(w.objects), TypeError, "pickle"),
    Row(OP, "__copy__", "copy", lambda w: copy.copy(w.objects), TypeError, "copy"),
    Row(OP, "__deepcopy__", "deepcopy", lambda w: copy.deepcopy(w.objects), TypeError, "copy"),
    Row(
        OP,
        "get_many",
        "2, timeout=-1",
        lambda w: w.objects.get_many(2, timeout=-1),
        ValueError,
        "timeout",
    ),
    Row(
        OP,
        "get_many",
        "2, timeout=[]",
        lambda w: w.objects.get_many(2, timeout=[]),
        TypeError,
        "timeout",
    ),
    # --- Borrow ---
    Row(
        "Borrow",
        "__class_getitem__",
        "no item",
        lambda w: Borrow.__class_getitem__(),
        TypeError,
        "item",
    ),
    Row("Borrow", "__init__", "direct", lambda w: Borrow(), TypeError, "cannot create"),
    Row(
        "Borrow",
        "__enter__",
        "entered already",
        lambda w: w.entered.__enter__(),
        RuntimeError,
        "already in use",
    ),
    Row(
        "Borrow",
        "__enter__",
        "pool closed",
        lambda w: w.closed_borrow.__enter__(),
        PoolClosed,
        "closed",
    ),
    Row(
        "Borrow",
        "__exit__",
        "not entered",
        lambda w: w.borrow.__exit__(None, None, None),
        RuntimeError,
        "without being entered",
    ),
    Row("Borrow", "__exit__", "no arguments", lambda w: w.borrow.__exit__(), TypeError, "exc"),
    # --- AsyncBorrow ---
    Row("AsyncBorrow", "__init__", "not a pool", lambda w: AsyncBorrow(5), TypeError, "pool"),
    Row(
        "AsyncBorrow",
        "__aenter__",
        "entered twice",
        lambda w: run(w.aentered.__aenter__()),
        RuntimeError,
        "already in use",
    ),
    Row(
        "AsyncBorrow",
        "__aenter__",
        "pool closed",
        lambda w: run(w.closed_aborrow.__aenter__()),
        PoolClosed,
        "closed",
    ),
    Row(
        "AsyncBorrow",
        "__aexit__",
        "not entered",
        lambda w: run(w.aborrow.__aexit__(None, None, None)),
        RuntimeError,
        "without being entered",
    ),
    # --- TieredPool ---
    Row(T, "__init__", "factory=None", lambda w: TieredPool(None, [16]), TypeError, "factory"),
    Row(
        T,
        "__init__",
        "factory=async def",
        lambda w: TieredPool(async_hook, [16]),
        TypeError,
        "factory.*coroutine function",
    ),
    Row(
        T,
        "__init__",
        "validate=async def",
        new_tiered_pool(validate=async_hook),
        TypeError,
        "validate.*coroutine function",
    ),
    Row(T, "__init__", "no tiers", lambda w: TieredPool(list), TypeError, "tiers"),
    Row(T, "__init__", "tiers=16", new_tiered_pool(tiers=16), TypeError, "tiers"),
    Row(T, "__init__", "tiers=None", new_tiered_pool(tiers=None), TypeError, "tiers"),
    Row(T, "__init__", "tiers=[]", new_tiered_pool(tiers=()), ValueError, "tiers"),
    Row(T, "__init__", "tier 0", new_tiered_pool(tiers=(0,)), ValueError, "tier"),
    Row(T, "__init__", "tier -1", new_tiered_pool(tiers=(-1,)), ValueError, "tier"),
    Row(T, "__init__", "tier twice", new_tiered_pool(tiers=(16, 16)), ValueError, "tier"),
    Row(T, "__init__", "tier 2**70", new_tiered_pool(tiers=(2**70,)), ValueError, "tier"),
    Row(T, "__init__", "tier '16'", new_tiered_pool(tiers=("16",)), TypeError, "tier"),
    Row(T, "__init__", "max_idle -1", new_tiered_pool(tiers=((16, -1),)), ValueError, "max_idle"),
    Row(T, "__init__", "max_idle 1.5", new_tiered_pool(tiers=((16, 1.5),)), TypeError, "max_idle"),
    Row(T, "__init__", "max_idle 2**30", new_tiered_pool(tiers=((16, 2**30),)), ValueError, "idle"),
    Row(T, "__init__", "size_of=1", new_tiered_pool(size_of=1), TypeError, "size_of"),
    Row(T, "__init__", "reset=True", new_tiered_pool(reset=True), TypeError, "reset"),
    Row(T, "__init__", "validate='x'", new_tiered_pool(validate="x"), TypeError, "validate"),
    Row(T, "__init__", "destroy=3", new_tiered_pool(destroy=3), TypeError, "destroy"),
    Row(T, "__init__", "reset_on='x'", new_tiered_pool(reset_on="x"), ValueError, "reset_on"),
    Row(
        T,
        "__init__",
        "idle_timeout=-1",
        new_tiered_pool(idle_timeout=-1),
        ValueError,
        "idle_timeout",
    ),
    Row(T, "__init__", "shards=0", new_tiered_pool(shards=0), ValueError, "shards"),
    Row(T, "__init__", "name=1", new_tiered_pool(name=1), TypeError, "name"),
    Row(T, "__init__", "track=1", new_tiered_pool(track=1), TypeError, "track"),
    Row(T, "__init__", "checked=1", new_tiered_pool(checked=1), TypeError, "checked"),
    Row(T, "__init__", "max_idle=", new_tiered_pool(max_idle=3), TypeError, "max_idle"),
    Row(T, "get", "size=-1", lambda w: w.tiered.get(-1), ValueError, "size"),
    Row(T, "get", "size=1.5", lambda w: w.tiered.get(1.5), TypeError, "size"),
    Row(T, "get", "size=None", lambda w: w.tiered.get(None), TypeError, "size"),
    Row(T, "get", "size=True", lambda w: w.tiered.get(True), TypeError, "size"),
    Row(T, "get", "size=2**70", lambda w: w.tiered.get(2**70), ValueError, "size"),
    Row(T, "get", "no size", lambda w: w.tiered.get(), TypeError, "size"),
    Row(T, "get", "after close", lambda w: w.closed_tiered.get(1), PoolClosed, "closed"),
    Row(
        T, "get", "oversize after close", lambda w: w.closed_tiered.get(10**6), PoolClosed, "closed"
    ),
    Row(T, "put", "no len()", lambda w: w.tiered.put(object()), TypeError, "len"),
    Row(T, "put", "len() < 0", lambda w: w.tiered.put(w.negative), ValueError, "0"),
    Row(T, "put", "None", lambda w: w.tiered.put(None), TypeError, "NoneType"),
    Row(T, "put", "never handed out", lambda w: w.tiered.put(w.stranger), ValueError, "not handed"),
    Row(
        T,
        "put",
        "put twice",
        lambda w: w.tiered.put(w.tiered_returned),
        ValueError,
        "not handed out",
    ),
    Row(T, "put", "of another pool", lambda w: w.tiered.put(w.held), ValueError, "not handed"),
    Row(
        T,
        "put",
        "after close, foreign",
        lambda w: w.closed_tiered.put(w.stranger),
        ValueError,
        "not handed out",
    ),
    Row(T, "put", "no object", lambda w: w.tiered.put(), TypeError, "obj"),
    Row(
        T,
        "discard",
        "never handed out",
        lambda w: w.tiered.discard(w.stranger),
        ValueError,
        "not handed",
    ),
    Row(
        T,
        "discard",
        "returned already",
        lambda w: w.tiered.discard(w.tiered_returned),
        ValueError,
        "not handed out",
    ),
    Row(
        T,
        "discard",
        "of another pool",
        lambda w: w.tiered.discard(w.held),
        ValueError,
        "not handed",
    ),
    Row(
        T,
        "discard",
        "no len(), foreign",
        lambda w: w.tiered.discard(object()),
        ValueError,
        "not handed",
    ),
    Row(
        T,
        "discard",
        "after close, foreign",
        lambda w: w.closed_tiered.discard(w.stranger),
        ValueError,
        "not handed out",
    ),
    Row(T, "discard", "no object", lambda w: w.tiered.discard(), TypeError, "obj"),
    Row(
        T,
        "__init__",
        "discard_on=instance",
        new_tiered_pool(discard_on=KeyError("k")),
        TypeError,
        "discard_on",
    ),
    Row(
        T,
        "__init__",
        "discard_on=(KeyError, None)",
        new_tiered_pool(discard_on=(KeyError, None)),
        TypeError,
        "discard_on.*None",
    ),
    Row(
        T,
        "__init__",
        "discard_on=object",
        new_tiered_pool(discard_on=object),
        TypeError,
        "discard_on.*object",
    ),
    Row(T, "borrow", "size=-1", lambda w: w.tiered.borrow(-1), ValueError, "size"),
    Row(T, "borrow", "size=1.0", lambda w: w.tiered.borrow(1.0), TypeError, "size"),
    Row(T, "aget", "size=-1", lambda w: w.tiered.aget(-1), ValueError, "size"),
    Row(T, "aget", "timeout=-1", lambda w: w.tiered.aget(1, timeout=-1), ValueError, "timeout"),
    Row(T, "aget", "after close", lambda w: run(w.closed_tiered.aget(1)), PoolClosed, "closed"),
    Row(T, "aborrow", "size='x'", lambda w: w.tiered.aborrow("x"), TypeError, "size"),
    Row(T, "trim", "keep=-1", lambda w: w.tiered.trim(-1), ValueError, "keep"),
    Row(T, "trim", "keep=0.5", lambda w: w.tiered.trim(keep=0.5), TypeError, "keep"),
    Row(T, "close", "after close", lambda w: w.closed_tiered.close(), None),
    Row(T, "outstanding", "track=False", lambda w: w.tiered.outstanding(), RuntimeError, "track"),
    *no_args(T, tiered, "stats tier_stats clear close outstanding __len__ __enter__"),
    Row(T, "__exit__", "no arguments", lambda w: w.tiered.__exit__(), TypeError, "exc"),
    *rows_for_properties(T, tiered, "closed tiers name track checked discard_on"),
    Row(
        T,
        "__class_getitem__",
        "no item",
        lambda w: TieredPool.__class_getitem__(),
        TypeError,
        "item",
    ),
    Row(T, "__init__", "factory=5", lambda w: TieredPool(5, [16]), TypeError, "factory"),
    Row(T, "__init__", "tiers=[16.0]", new_tiered_pool([16.0]), TypeError, "tier"),
    Row(T, "__init__", "tiers=[(16,)]", new_tiered_pool([(16,)]), TypeError, "tier"),
    Row(T, "__init__", "tiers=[(16, 1, 1)]", new_tiered_pool([(16, 1, 1)]), TypeError, "tier"),
    Row(T, "__init__", "tiers=[True]", new_tiered_pool([True]), TypeError, "tier"),
    Row(
        T, "__init__", "tiers=[(16, 10**9)]", new_tiered_pool([(16, 10**9)]), ValueError, "max_idle"
    ),
    Row(
        T,
        "__init__",
        "tiers=[(16, 1), (16, 2)]",
        new_tiered_pool([(16, 1), (16, 2)]),
        ValueError,
        "tier",
    ),
    Row(T, "__init__", "reset=1", new_tiered_pool(reset=1), TypeError, "reset"),
    Row(
        T, "__init__", 'reset_on="later"', new_tiered_pool(reset_on="later"), ValueError, "reset_on"
    ),
    Row(T, "__init__", "reset_on=1", new_tiered_pool(reset_on=1), TypeError, "reset_on"),
    Row(
        T, "__init__", "idle_timeout=0", new_tiered_pool(idle_timeout=0), ValueError, "idle_timeout"
    ),
    Row(
        T,
        "__init__",
        'idle_timeout="1"',
        new_tiered_pool(idle_timeout="1"),
        TypeError,
        "idle_timeout",
    ),
    Row(T, "__init__", "shards=100_000", new_tiered_pool(shards=100_000), ValueError, "shards"),
    Row(T, "__init__", "shards=1.0", new_tiered_pool(shards=1.0), TypeError, "shards"),
    Row(T, "get", "'1'", lambda w: w.tiered.get("1"), TypeError, "size"),
    Row(T, "put", "object()", lambda w: w.tiered.put(object()), TypeError, "len"),
    Row(T, "put", "5", lambda w: w.tiered.put(5), TypeError, "len"),
    Row(T, "__reduce__", "pickle", lambda w: pickle.dumps(w.tiered), TypeError, "pickle"),
    Row(T, "__copy__", "copy", lambda w: copy.copy(w.tiered), TypeError, "copy"),
    Row(T, "__deepcopy__", "deepcopy", lambda w: copy.deepcopy(w.tiered), TypeError, "copy"),
    # --- BlockPool ---
    Row(BP, "__init__", "positional", lambda w: BlockPool(64), TypeError, "positional"),
    Row(BP, "__init__", "classes=5", lambda w: BlockPool(classes=5), TypeError, "classes"),
    Row(BP, "__init__", "classes=[]", lambda w: BlockPool(classes=[]), ValueError, "classes"),
    Row(BP, "__init__", "class 0", lambda w: BlockPool(classes=[0]), ValueError, "classes"),
    Row(BP, "__init__", "class 'x'", lambda w: BlockPool(classes=["x"]), TypeError, "classes"),
    Row(
        BP, "__init__", "class idle -1", lambda w: BlockPool(classes=[(64, -1)]), ValueError, "idle"
    ),
    Row(
        BP,
        "__init__",
        "class idle 2**30",
        lambda w: BlockPool(classes=[(64, 2**30)]),
        ValueError,
        "idle",
    ),
    Row(BP, "__init__", "max_block=0", lambda w: BlockPool(max_block=0), ValueError, "max_block"),
    Row(
        BP,
        "__init__",
        "max_block != classes",
        lambda w: BlockPool(classes=[64], max_block=128),
        ValueError,
        "max_block",
    ),
    Row(
        BP,
        "__init__",
        "max_idle_bytes=-1",
        lambda w: BlockPool(max_idle_bytes=-1),
        ValueError,
        "max_idle_bytes",
    ),
    Row(
        BP,
        "__init__",
        "max_idle_bytes=1.5",
        lambda w: BlockPool(max_idle_bytes=1.5),
        TypeError,
        "max_idle_bytes",
    ),
    Row(BP, "__init__", "zero='x'", lambda w: BlockPool(zero="x"), ValueError, "zero"),
    Row(BP, "__init__", "zero=1", lambda w: BlockPool(zero=1), TypeError, "zero"),
    Row(BP, "__init__", "alignment=3", lambda w: BlockPool(alignment=3), ValueError, "alignment"),
    Row(BP, "__init__", "alignment=0", lambda w: BlockPool(alignment=0), ValueError, "alignment"),
    Row(
        BP,
        "__init__",
        "alignment=8192",
        lambda w: BlockPool(alignment=8192),
        ValueError,
        "alignment",
    ),
    Row(
        BP,
        "__init__",
        "alignment=True",
        lambda w: BlockPool(alignment=True),
        TypeError,
        "alignment",
    ),
    Row(
        BP,
        "__init__",
        "idle_timeout=nan",
        lambda w: BlockPool(idle_timeout=NAN),
        ValueError,
        "idle_timeout",
    ),
    Row(BP, "__init__", "shards=0", lambda w: BlockPool(shards=0), ValueError, "shards"),
    Row(BP, "__init__", "name=5", lambda w: BlockPool(name=5), TypeError, "name"),
    Row(BP, "__init__", "track='x'", lambda w: BlockPool(track="x"), TypeError, "track"),
    Row(BP, "get", "n=-1", lambda w: w.blocks.get(-1), ValueError, r"\bn\b"),
    Row(BP, "get", "n=1.5", lambda w: w.blocks.get(1.5), TypeError, r"\bn\b"),
    Row(BP, "get", "n=True", lambda w: w.blocks.get(True), TypeError, r"\bn\b"),
    Row(BP, "get", "n=np.float64", lambda w: w.blocks.get(np.float64(3)), TypeError, r"\bn\b"),
    Row(BP, "get", "n=np.True_", lambda w: w.blocks.get(np.True_), TypeError, r"\bn\b"),
    Row(BP, "get", "n=np.int64(-1)", lambda w: w.blocks.get(np.int64(-1)), ValueError, r"\bn\b"),
    Row(BP, "get", "n=2**64", lambda w: w.blocks.get(2**64), ValueError, r"\bn\b"),
    Row(BP, "get", "n=2**62", lambda w: w.blocks.get(2**62), MemoryError, f"allocate .*{2**62}"),
    Row(BP, "get", "n=2**63-1", lambda w: w.blocks.get(2**63 - 1), MemoryError, str(2**63 - 1)),
    Row(BP, "get", "no n", lambda w: w.blocks.get(), TypeError, r"\bn\b"),
    Row(BP, "get", "n= keyword", lambda w: w.blocks.get(n=1), TypeError, r"\bn\b"),
    Row(BP, "get", "zeroed=1", lambda w: w.blocks.get(1, zeroed=1), TypeError, "zeroed"),
    Row(BP, "get", "zeroed positional", lambda w: w.blocks.get(1, True), TypeError, "positional"),
    Row(BP, "get", "after close", lambda w: w.closed_blocks.get(1), PoolClosed, "closed"),
    Row(BP, "put", "None", lambda w: w.blocks.put(None), TypeError, "block"),
    Row(BP, "put", "a Buffer", lambda w: w.blocks.put(w.buf), TypeError, "block"),
    Row(
        BP, "put", "of another pool", lambda w: w.blocks.put(w.foreign_block), ValueError, "another"
    ),
    Row(BP, "put", "released", lambda w: w.blocks.put(w.released_block), ValueError, "released"),
    Row(BP, "put", "view alive", lambda w: w.blocks.put(w.viewed), BufferError, "view"),
    Row(
        BP,
        "put",
        "release pending",
        lambda w: w.blocks.put(w.pending_block),
        ValueError,
        "released",
    ),
    Row(BP, "trim", "keep_bytes=-1", lambda w: w.blocks.trim(-1), ValueError, "keep_bytes"),
    Row(
        BP,
        "trim",
        "keep_bytes='x'",
        lambda w: w.blocks.trim(keep_bytes="x"),
        TypeError,
        "keep_bytes",
    ),
    Row(BP, "close", "after close", lambda w: w.closed_blocks.close(), None),
    Row(BP, "outstanding", "track=False", lambda w: w.blocks.outstanding(), RuntimeError, "track"),
    *no_args(BP, blocks, "stats clear close outstanding __len__ __enter__"),
    Row(BP, "__exit__", "no arguments", lambda w: w.blocks.__exit__(), TypeError, "exc"),
    *rows_for_properties(
        BP, blocks, "closed classes max_block max_idle_bytes alignment zero name track"
    ),
    Row(BP, "__init__", 'classes="abc"', lambda w: BlockPool(classes="abc"), TypeError, "classes"),
    Row(
        BP,
        "__init__",
        "classes=[4096.0]",
        lambda w: BlockPool(classes=[4096.0]),
        TypeError,
        "class",
    ),
    Row(
        BP,
        "__init__",
        'classes=["4096"]',
        lambda w: BlockPool(classes=["4096"]),
        TypeError,
        "class",
    ),
    Row(
        BP,
        "__init__",
        "classes=[(4096,)]",
        lambda w: BlockPool(classes=[(4096,)]),
        TypeError,
        "class",
    ),
    Row(
        BP,
        "__init__",
        "classes=[(4096,1,2)]",
        lambda w: BlockPool(classes=[(4096, 1, 2)]),
        TypeError,
        "class",
    ),
    Row(
        BP,
        "__init__",
        "classes=[[4096,1]]",
        lambda w: BlockPool(classes=[[4096, 1]]),
        TypeError,
        "class",
    ),
    Row(BP, "__init__", "classes=[True]", lambda w: BlockPool(classes=[True]), TypeError, "class"),
    Row(
        BP,
        "__init__",
        "classes=[(4096,1.5)]",
        lambda w: BlockPool(classes=[(4096, 1.5)]),
        TypeError,
        "max_idle",
    ),
    Row(
        BP,
        "__init__",
        "classes=[(4096,-1)]",
        lambda w: BlockPool(classes=[(4096, -1)]),
        ValueError,
        "max_idle",
    ),
    Row(
        BP,
        "__init__",
        "classes=[(4096,10**9)]",
        lambda w: BlockPool(classes=[(4096, 10**9)]),
        ValueError,
        "max_idle",
    ),
    Row(BP, "__init__", "classes=[-1]", lambda w: BlockPool(classes=[-1]), ValueError, "class"),
    Row(
        BP, "__init__", "classes=[2**70]", lambda w: BlockPool(classes=[2**70]), ValueError, "class"
    ),
    Row(
        BP,
        "__init__",
        "classes=[4096,4096]",
        lambda w: BlockPool(classes=[4096, 4096]),
        ValueError,
        "class",
    ),
    Row(
        BP,
        "__init__",
        "classes=[(4096,1),(4096,2)]",
        lambda w: BlockPool(classes=[(4096, 1), (4096, 2)]),
        ValueError,
        "class",
    ),
    Row(
        BP,
        "__init__",
        "classes=[4096,65536],max_block=4096",
        lambda w: BlockPool(classes=[4096, 65536], max_block=4096),
        ValueError,
        "max_block",
    ),
    Row(BP, "__init__", "max_block=-1", lambda w: BlockPool(max_block=-1), ValueError, "max_block"),
    Row(
        BP, "__init__", "max_block=1.5", lambda w: BlockPool(max_block=1.5), TypeError, "max_block"
    ),
    Row(
        BP, "__init__", 'max_block="1"', lambda w: BlockPool(max_block="1"), TypeError, "max_block"
    ),
    Row(
        BP,
        "__init__",
        "max_idle_bytes=1e6",
        lambda w: BlockPool(max_idle_bytes=1e6),
        TypeError,
        "max_idle_bytes",
    ),
    Row(
        BP,
        "__init__",
        "max_idle_bytes=True",
        lambda w: BlockPool(max_idle_bytes=True),
        TypeError,
        "max_idle_bytes",
    ),
    Row(
        BP,
        "__init__",
        'zero="sometimes"',
        lambda w: BlockPool(zero="sometimes"),
        ValueError,
        "zero",
    ),
    Row(BP, "__init__", 'zero="NEVER"', lambda w: BlockPool(zero="NEVER"), ValueError, "zero"),
    Row(BP, "__init__", "zero=True", lambda w: BlockPool(zero=True), TypeError, "zero"),
    Row(BP, "__init__", "alignment=48", lambda w: BlockPool(alignment=48), ValueError, "alignment"),
    Row(
        BP, "__init__", "alignment=-64", lambda w: BlockPool(alignment=-64), ValueError, "alignment"
    ),
    Row(
        BP,
        "__init__",
        "alignment=64.0",
        lambda w: BlockPool(alignment=64.0),
        TypeError,
        "alignment",
    ),
    Row(
        BP,
        "__init__",
        "idle_timeout=0",
        lambda w: BlockPool(idle_timeout=0),
        ValueError,
        "idle_timeout",
    ),
    Row(
        BP,
        "__init__",
        "idle_timeout=-1",
        lambda w: BlockPool(idle_timeout=-1),
        ValueError,
        "idle_timeout",
    ),
    Row(
        BP,
        "__init__",
        'idle_timeout="5"',
        lambda w: BlockPool(idle_timeout="5"),
        TypeError,
        "idle_timeout",
    ),
    Row(
        BP, "__init__", "shards=100_000", lambda w: BlockPool(shards=100_000), ValueError, "shards"
    ),
    Row(BP, "__init__", "shards=2.0", lambda w: BlockPool(shards=2.0), TypeError, "shards"),
    Row(BP, "get", "'3'", lambda w: w.blocks.get("3"), TypeError, "\\bn\\b"),
    Row(BP, "get", "None", lambda w: w.blocks.get(None), TypeError, "\\bn\\b"),
    Row(BP, "get", "2**70", lambda w: w.blocks.get(2**70), ValueError, "\\bn\\b"),
    Row(BP, "get", "-2**70", lambda w: w.blocks.get(-(2**70)), ValueError, "\\bn\\b"),
    Row(
        BP, "get", "10, zeroed='yes'", lambda w: w.blocks.get(10, zeroed="yes"), TypeError, "zeroed"
    ),
    Row(BP, "get", "10, zeroed=1", lambda w: w.blocks.get(10, zeroed=1), TypeError, "zeroed"),
    Row(
        BP,
        "trim",
        "keep_bytes=0.5",
        lambda w: w.blocks.trim(keep_bytes=0.5),
        TypeError,
        "keep_bytes",
    ),
    Row(BP, "trim", "'1'", lambda w: w.blocks.trim("1"), TypeError, "keep_bytes"),
    Row(BP, "put", "bytes", lambda w: w.blocks.put(b"x" * 100), TypeError, "block"),
    Row(BP, "__reduce__", "pickle", lambda w: pickle.dumps(w.blocks), TypeError, "pickle"),
    Row(BP, "__copy__", "copy", lambda w: copy.copy(w.blocks), TypeError, "copy"),
    Row(BP, "__deepcopy__", "deepcopy", lambda w: copy.deepcopy(w.blocks), TypeError, "copy"),
    # --- Block ---
    Row(B, "__init__", "direct", lambda w: Block(), TypeError, "cannot create"),
    Row(
        B, "release", "twice", lambda w: w.released_block.release(), ValueError, "released already"
    ),
    Row(B, "release", "view alive", lambda w: w.viewed.release(), BufferError, "1 view"),
    Row(
        B, "release", "release pending", lambda w: w.pending_block.release(), ValueError, "released"
    ),
    Row(B, "release", "argument", lambda w: w.block.release(1), TypeError, "release"),
    *rows_for_properties(B, lambda w: w.block, "released capacity"),
    Row(B, "__len__", "released", lambda w: len(w.released_block), ValueError, "released"),
    Row(B, "__len__", "release pending", lambda w: len(w.pending_block), ValueError, "released"),
    Row(B, "__enter__", "released", lambda w: w.released_block.__enter__(), ValueError, "released"),
    Row(
        B,
        "__exit__",
        "released",
        lambda w: w.released_block.__exit__(None, None, None),
        None,
        returns=False,
    ),
    Row(
        B,
        "__exit__",
        "release pending",
        lambda w: w.pending_block.__exit__(None, None, None),
        None,
        returns=False,
    ),
    Row(B, "__exit__", "no arguments", lambda w: w.block.__exit__(), TypeError, "exc"),
    Row(
        B, "__buffer__", "released", lambda w: memoryview(w.released_block), BufferError, "released"
    ),
    Row(
        B,
        "__buffer__",
        "release pending",
        lambda w: memoryview(w.pending_block),
        BufferError,
        "released",
    ),
    Row(B, "__reduce__", "pickle", lambda w: pickle.dumps(w.block), TypeError, "pickle"),
    Row(B, "__reduce__", "copy", lambda w: copy.copy(w.block), TypeError, "pickle"),
    # --- the stats snapshots ---
    Row("PoolStats", "__init__", "direct", lambda w: PoolStats(), TypeError, "cannot create"),
    Row(
        "PoolStats", "as_dict", "argument", lambda w: w.pool_stats.as_dict(1), TypeError, "as_dict"
    ),
    *rows_for_properties(
        "PoolStats",
        lambda w: w.pool_stats,
        "created destroyed hits misses puts dropped reset_errors invalid expired waits "
        "timeouts cancelled rejected discarded in_use waiting idle max_in_use hit_rate",
    ),
    Row(
        "BlockPoolStats",
        "__init__",
        "direct",
        lambda w: BlockPoolStats(),
        TypeError,
        "cannot create",
    ),
    Row(
        "BlockPoolStats",
        "as_dict",
        "argument",
        lambda w: w.block_stats.as_dict(1),
        TypeError,
        "as_dict",
    ),
    *rows_for_properties(
        "BlockPoolStats",
        lambda w: w.block_stats,
        "bytes_idle bytes_in_use max_idle_bytes in_use idle hits misses puts created destroyed "
        "dropped expired oversize hit_rate",
    ),
    # pyo3 names no attribute for this one: "readonly attribute".
    Row(
        "BlockPoolStats",
        "classes",
        "assign",
        lambda w: set_attr("classes")(w.block_stats),
        AttributeError,
        "readonly",
    ),
    Row(
        "BlockClassStats",
        "__init__",
        "direct",
        lambda w: BlockClassStats(),
        TypeError,
        "cannot create",
    ),
    *rows_for_properties(
        "BlockClassStats",
        lambda w: w.class_stats,
        "size max_idle idle in_use hits misses puts dropped expired",
    ),
    # --- BufferPool ---
    Row(FP, "__init__", "positional", lambda w: BufferPool(1), TypeError, "positional"),
    Row(FP, "__init__", "max_idle=-1", lambda w: BufferPool(max_idle=-1), ValueError, "max_idle"),
    Row(FP, "__init__", "max_idle='3'", lambda w: BufferPool(max_idle="3"), TypeError, "max_idle"),
    Row(
        FP,
        "__init__",
        "max_idle=10**9",
        lambda w: BufferPool(max_idle=10**9),
        ValueError,
        "max_idle",
    ),
    Row(
        FP,
        "__init__",
        "max_capacity=-1",
        lambda w: BufferPool(max_capacity=-1),
        ValueError,
        "max_capacity",
    ),
    Row(
        FP,
        "__init__",
        "max_capacity=2**64",
        lambda w: BufferPool(max_capacity=2**64),
        ValueError,
        "max_capacity",
    ),
    Row(
        FP,
        "__init__",
        "max_capacity=1e6",
        lambda w: BufferPool(max_capacity=1e6),
        TypeError,
        "max_capacity",
    ),
    Row(
        FP,
        "__init__",
        "idle_timeout=-1",
        lambda w: BufferPool(idle_timeout=-1),
        ValueError,
        "idle_timeout",
    ),
    Row(
        FP,
        "__init__",
        "idle_timeout=True",
        lambda w: BufferPool(idle_timeout=True),
        TypeError,
        "idle_timeout",
    ),
    Row(
        FP, "__init__", "shards=100000", lambda w: BufferPool(shards=100_000), ValueError, "shards"
    ),
    Row(FP, "__init__", "name=5", lambda w: BufferPool(name=5), TypeError, "name"),
    Row(FP, "__init__", "track=0", lambda w: BufferPool(track=0), TypeError, "track"),
    Row(FP, "get", "after close", lambda w: w.closed_buffers.get(), PoolClosed, "closed"),
    Row(FP, "put", "None", lambda w: w.buffers.put(None), TypeError, "buf"),
    Row(FP, "put", "a Block", lambda w: w.buffers.put(w.block), TypeError, "buf"),
    Row(FP, "put", "bytearray", lambda w: w.buffers.put(bytearray(b"x")), TypeError, "buf"),
    Row(
        FP, "put", "of another pool", lambda w: w.buffers.put(w.foreign_buf), ValueError, "another"
    ),
    Row(
        FP,
        "put",
        "released",
        lambda w: w.buffers.put(w.released_buf),
        ValueError,
        "released already",
    ),
    Row(FP, "put", "view alive", lambda w: w.buffers.put(w.exported), BufferError, "view"),
    Row(
        FP, "put", "release pending", lambda w: w.buffers.put(w.pending_buf), ValueError, "released"
    ),
    Row(FP, "trim", "keep=-1", lambda w: w.buffers.trim(-1), ValueError, "keep"),
    Row(FP, "trim", "keep=0.5", lambda w: w.buffers.trim(keep=0.5), TypeError, "keep"),
    Row(FP, "close", "after close", lambda w: w.closed_buffers.close(), None),
    Row(FP, "outstanding", "track=False", lambda w: w.buffers.outstanding(), RuntimeError, "track"),
    *no_args(FP, buffers, "get stats clear close outstanding __len__ __enter__"),
    Row(FP, "__exit__", "no arguments", lambda w: w.buffers.__exit__(), TypeError, "exc"),
    *rows_for_properties(
        FP,
        buffers,
        "closed typical_capacity large_capacity max_capacity max_idle name track",
    ),
    Row(FP, "__init__", "max_idle=1.5", lambda w: BufferPool(max_idle=1.5), TypeError, "max_idle"),
    Row(
        FP, "__init__", "max_idle=True", lambda w: BufferPool(max_idle=True), TypeError, "max_idle"
    ),
    Row(
        FP,
        "__init__",
        "max_idle=2**70",
        lambda w: BufferPool(max_idle=2**70),
        ValueError,
        "max_idle",
    ),
    Row(
        FP,
        "__init__",
        'max_capacity="1"',
        lambda w: BufferPool(max_capacity="1"),
        TypeError,
        "max_capacity",
    ),
    Row(
        FP,
        "__init__",
        "idle_timeout=0",
        lambda w: BufferPool(idle_timeout=0),
        ValueError,
        "idle_timeout",
    ),
    Row(
        FP,
        "__init__",
        'idle_timeout=float("nan")',
        lambda w: BufferPool(idle_timeout=float("nan")),
        ValueError,
        "idle_timeout",
    ),
    Row(
        FP,
        "__init__",
        'idle_timeout="1"',
        lambda w: BufferPool(idle_timeout="1"),
        TypeError,
        "idle_timeout",
    ),
    Row(FP, "__init__", "shards=0", lambda w: BufferPool(shards=0), ValueError, "shards"),
    Row(FP, "__init__", "shards=1.0", lambda w: BufferPool(shards=1.0), TypeError, "shards"),
    Row(FP, "__reduce__", "pickle", lambda w: pickle.dumps(w.buffers), TypeError, "pickle"),
    Row(FP, "__copy__", "copy", lambda w: copy.copy(w.buffers), TypeError, "copy"),
    Row(FP, "__deepcopy__", "deepcopy", lambda w: copy.deepcopy(w.buffers), TypeError, "copy"),
    # --- Buffer ---
    Row(F, "__init__", "direct", lambda w: Buffer(), TypeError, "cannot create"),
    Row(F, "write", "str", lambda w: w.buf.write("text"), TypeError, "bytes-like"),
    Row(F, "write", "None", lambda w: w.buf.write(None), TypeError, "bytes-like"),
    Row(F, "write", "int", lambda w: w.buf.write(5), TypeError, "bytes-like"),
    Row(F, "write", "list", lambda w: w.buf.write([1, 2]), TypeError, "bytes-like"),
    Row(F, "write", "no data", lambda w: w.buf.write(), TypeError, "data"),
    Row(F, "write", "data= keyword", lambda w: w.buf.write(data=b"x"), TypeError, "data"),
    Row(F, "write", "into itself", lambda w: w.buf.write(w.buf), BufferError, "view"),
    Row(F, "write", "view alive", lambda w: w.exported.write(b"x"), BufferError, "view"),
    Row(F, "write", "released", lambda w: w.released_buf.write(b"x"), ValueError, "released"),
    Row(F, "write", "release pending", lambda w: w.pending_buf.write(b"x"), ValueError, "released"),
    Row(F, "extend", "float", lambda w: w.buf.extend(1.5), TypeError, "bytes-like"),
    Row(F, "extend", "view alive", lambda w: w.exported.extend(b"x"), BufferError, "view"),
    Row(F, "extend", "released", lambda w: w.released_buf.extend(b"x"), ValueError, "released"),
    Row(F, "__iadd__", "str", lambda w: w.buf.__iadd__("text"), TypeError, "bytes-like"),
    Row(F, "__iadd__", "view alive", lambda w: w.exported.__iadd__(b"x"), BufferError, "view"),
    Row(F, "getvalue", "released", lambda w: w.released_buf.getvalue(), ValueError, "released"),
    Row(
        F, "getvalue", "release pending", lambda w: w.pending_buf.getvalue(), ValueError, "released"
    ),
    Row(F, "getvalue", "argument", lambda w: w.buf.getvalue(1), TypeError, "getvalue"),
    Row(F, "clear", "view alive", lambda w: w.exported.clear(), BufferError, "view"),
    Row(F, "clear", "released", lambda w: w.released_buf.clear(), ValueError, "released"),
    Row(F, "release", "twice", lambda w: w.released_buf.release(), ValueError, "released already"),
    Row(F, "release", "view alive", lambda w: w.exported.release(), BufferError, "view"),
    Row(F, "release", "release pending", lambda w: w.pending_buf.release(), ValueError, "released"),
    Row(F, "capacity", "released", lambda w: w.released_buf.capacity, ValueError, "released"),
    *rows_for_properties(F, lambda w: w.buf, "capacity released"),
    Row(F, "__len__", "released", lambda w: len(w.released_buf), ValueError, "released"),
    Row(F, "__enter__", "released", lambda w: w.released_buf.__enter__(), ValueError, "released"),
    Row(
        F,
        "__exit__",
        "released",
        lambda w: w.released_buf.__exit__(None, None, None),
        None,
        returns=False,
    ),
    Row(
        F,
        "__exit__",
        "release pending",
        lambda w: w.pending_buf.__exit__(None, None, None),
        None,
        returns=False,
    ),
    Row(F, "__exit__", "no arguments", lambda w: w.buf.__exit__(), TypeError, "exc"),
    Row(F, "__buffer__", "released", lambda w: memoryview(w.released_buf), BufferError, "released"),
    Row(
        F,
        "__buffer__",
        "release pending",
        lambda w: memoryview(w.pending_buf),
        BufferError,
        "released",
    ),
    Row(F, "__reduce__", "pickle", lambda w: pickle.dumps(w.buf), TypeError, "pickle"),
    Row(F, "__reduce__", "copy", lambda w: copy.copy(w.buf), TypeError, "Buffer"),
    # --- Resetter, and the module's functions ---
    Row("Resetter", "__init__", "a protocol", lambda w: Resetter(), TypeError, "Protocols"),
    Row("Resetter", "reset", "no object", lambda w: Resetter.reset(), TypeError, "self"),
    Row("shardpool", "trim_on_gc", "not a pool", lambda w: trim_on_gc(5), TypeError, "pool"),
    Row(
        "shardpool",
        "trim_on_gc",
        "keep=-1",
        lambda w: trim_on_gc(w.objects, keep=-1),
        ValueError,
        "keep",
    ),
    Row(
        "shardpool",
        "trim_on_gc",
        "keep=True",
        lambda w: trim_on_gc(w.objects, keep=True),
        TypeError,
        "keep",
    ),
    Row(
        "shardpool",
        "trim_on_gc",
        "keep='1'",
        lambda w: trim_on_gc(w.objects, keep="1"),
        TypeError,
        "keep",
    ),
    Row(
        "shardpool",
        "trim_on_gc",
        "keep positional",
        lambda w: trim_on_gc(w.objects, 1),
        TypeError,
        "positional",
    ),
]


def message_of(exc: BaseException) -> str:
    """The message and the notes (pyo3 names a badly typed argument in a note)."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def run_row(row: Row) -> None:
    world = World()
    before = world.snapshot()
    try:
        if row.error is None:
            assert row.call(world) == row.returns, "a documented no-op returned something else"
        else:
            with pytest.raises(row.error) as info:
                row.call(world)
            assert type(info.value) is row.error, f"{type(info.value).__name__}, a subclass"
            assert re.search(row.match, message_of(info.value)), message_of(info.value)
        assert world.snapshot() == before, "the call changed the pool"
    finally:
        world.close()


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_bad_input_raises_the_right_error_and_changes_nothing(row):
    run_row(row)


def test_table_ids_are_unique():
    ids = [row.id for row in TABLE]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


# --- every public entry point has rows ---

API_DUNDERS = {
    "__init__",
    "__new__",
    "__enter__",
    "__exit__",
    "__aenter__",
    "__aexit__",
    "__len__",
    "__iadd__",
    "__class_getitem__",
    "__reduce__",
    "__copy__",
    "__deepcopy__",
    "__buffer__",
}


def public_entry_points() -> set[tuple[str, str]]:
    """(owner, entry) for every public callable or attribute of the API."""
    world = World()
    try:
        instances = [v for v in vars(world).values() if not isinstance(v, type)]
        found: set[tuple[str, str]] = set()
        for name in shardpool.__all__:
            value = getattr(shardpool, name)
            if not isinstance(value, type):
                if callable(value):
                    found.add(("shardpool", name))
                continue
            if issubclass(value, BaseException):
                # Exceptions take any arguments, as the built-in ones do, and
                # add no members of their own.
                assert not [m for m in vars(value) if not m.startswith("_")], name
                continue
            members = {m for m in vars(value) if not m.startswith("_") or m in API_DUNDERS}
            members.discard("__new__")
            members.add("__init__")  # the constructor, or its refusal
            for instance in instances:
                if isinstance(instance, value):
                    # Exports through the buffer protocol: __buffer__ (3.12+
                    # names it; 3.11 only has the slot).
                    if attempt(lambda i=instance: memoryview(i).release()) is None:
                        members.add("__buffer__")
                    break
            found.update((name, m) for m in members)
        return found
    finally:
        world.close()


def test_every_public_entry_point_has_a_row():
    covered = {(row.owner, row.entry) for row in TABLE}
    missing = sorted(public_entry_points() - covered)
    assert not missing, f"entry points without a row in TABLE: {missing}"
    unknown = sorted(covered - public_entry_points())
    assert not unknown, f"rows for entry points that do not exist: {unknown}"


# --- no row crashes the interpreter ---


def test_no_row_crashes_the_interpreter():
    """The whole table in a child process: a row that kills the interpreter
    (a Rust abort, a segfault) shows here, named, instead of killing pytest."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_bad_input as t\n"
        "for row in t.TABLE:\n"
        "    print(row.id, flush=True)\n"
        "    try:\n"
        "        t.run_row(row)\n"
        "    except BaseException:\n"
        "        pass  # reported by the in-process test\n"
        "print('done', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "(none)"
    died = f"the interpreter died (status {done.returncode}) in row {last}:\n{done.stderr[-2000:]}"
    assert done.returncode == 0, died
    assert last == "done", died


# --- close from many threads at once, while others use the pool ---


def use(pool) -> None:
    if isinstance(pool, ObjectPool):
        with pool.borrow(timeout=30):
            pass
    elif isinstance(pool, TieredPool):
        pool.put(pool.get(100))
    elif isinstance(pool, BlockPool):
        with pool.get(1000):
            pass
    else:
        with pool.get() as buf:
            buf.write(b"x")


@pytest.mark.parametrize(
    "make",
    [
        lambda: ObjectPool(Thing),
        lambda: ObjectPool(Thing, max_size=2),
        lambda: TieredPool(Thing, [16, 256]),
        lambda: BlockPool(),
        lambda: BufferPool(),
    ],
    ids=["objects", "bounded", "tiered", "blocks", "buffers"],
)
def test_concurrent_close_while_in_use(make):
    for _ in range(5):
        close_while_in_use(make())


def close_while_in_use(pool) -> None:
    """Three threads close the pool at once while five use it."""
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def user() -> None:
        start.wait()
        try:
            for _ in range(300):
                use(pool)
        except PoolClosed:
            pass
        except BaseException as e:
            errors.append(e)

    def closer() -> None:
        start.wait()
        try:
            pool.close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=user) for _ in range(5)]
    threads += [threading.Thread(target=closer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung in close()"
    assert errors == []
    assert pool.closed
    s = pool.stats()
    assert len(pool) == 0
    if isinstance(pool, BlockPool):
        assert (s.bytes_in_use, s.bytes_idle) == (0, 0)
    else:
        assert (s.in_use, s.idle) == (0, 0)
    assert s.created == s.destroyed
    with pytest.raises(PoolClosed):
        use(pool)


# --- documented, though not refused ---


@pytest.mark.parametrize(
    "make",
    [lambda **kw: ObjectPool(Thing, **kw), lambda **kw: TieredPool(Thing, [16], **kw)],
    ids=["objects", "tiered"],
)
def test_a_double_put_is_refused_by_default_and_accepted_only_when_opted_out(make):
    """The default ObjectPool and TieredPool are checked: an object returned
    twice is refused and the pool is unchanged. checked=False trades that
    check for speed and then takes it twice and hands it out twice, as
    documented."""
    pool = make()
    get = pool.get if isinstance(pool, ObjectPool) else lambda: pool.get(16)
    assert pool.checked
    thing = get()
    pool.put(thing)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(thing)
    assert len(pool) == 1
    assert pool.stats().puts == 1
    unchecked = make(checked=False)
    get = unchecked.get if isinstance(unchecked, ObjectPool) else lambda: unchecked.get(16)
    again = get()
    unchecked.put(again)
    unchecked.put(again)  # not refused
    assert len(unchecked) == 2
    assert get() is get() is again


def test_timeouts_are_real_errors_not_bad_input():
    """For completeness: a full bounded pool raises PoolTimeout (a
    TimeoutError), counted in waits and timeouts, and nothing else changes."""
    pool = ObjectPool(Thing, max_size=1)
    held = pool.get()
    with pytest.raises(PoolTimeout) as info:
        pool.get(timeout=0)
    assert isinstance(info.value, TimeoutError)
    s = pool.stats()
    assert (s.waits, s.timeouts, s.in_use, s.created) == (1, 1, 1, 1)
    pool.put(held)


# --- numbers: every size takes what operator.index takes, every duration
# what float() takes from a number ---


class Index:
    """An integer type of one's own: only ``__index__``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __index__(self) -> int:
        return self.n


class Real:
    """A real-number type of one's own: only ``__float__``."""

    def __init__(self, x: float) -> None:
        self.x = x

    def __float__(self) -> float:
        return float(self.x)


SIZE_TYPES = [int, np.int64, np.uint32, np.uint64, Index]
DURATION_TYPES = [
    float,
    int,
    np.float64,
    np.float32,
    np.int64,
    np.uint8,
    decimal.Decimal,
    fractions.Fraction,
    Real,
    Index,
]


@pytest.mark.parametrize("kind", SIZE_TYPES, ids=lambda k: k.__name__)
def test_every_size_takes_what_operator_index_takes(kind):
    objects = ObjectPool(list, max_idle=kind(3), max_size=kind(5), shards=kind(2), prefill=kind(1))
    assert (objects.max_idle, objects.max_size, objects.shards, len(objects)) == (3, 5, 2, 1)
    got = objects.get_many(kind(2))
    assert len(got) == 2
    objects.put_many(got)
    assert objects.trim(kind(1)) == 1
    tiered = TieredPool(bytearray, [kind(16), (kind(256), kind(2))], shards=kind(1))
    assert tiered.tiers == [(16, 1024), (256, 2)]
    tiered.put(tiered.get(kind(10)))
    assert tiered.trim(kind(0)) == 1
    blocks = BlockPool(
        classes=[kind(64), (kind(4096), kind(3))],
        max_idle_bytes=kind(1 << 20),
        alignment=kind(128),
        shards=kind(2),
    )
    assert (blocks.classes, blocks.max_idle_bytes, blocks.alignment) == ([64, 4096], 1 << 20, 128)
    assert BlockPool(max_block=kind(4096)).max_block == 4096
    blocks.get(kind(100)).release()
    assert blocks.trim(keep_bytes=kind(0)) == 4096
    buffers = BufferPool(max_idle=kind(3), max_capacity=kind(1 << 20), shards=kind(1))
    assert (buffers.max_idle, buffers.max_capacity) == (3, 1 << 20)
    buffers.get().release()
    assert buffers.trim(kind(0)) == 1
    trim_on_gc(buffers, keep=kind(0))()


@pytest.mark.parametrize("kind", DURATION_TYPES, ids=lambda k: k.__name__)
def test_every_duration_takes_what_float_takes_from_a_number(kind):
    objects = ObjectPool(list, idle_timeout=kind(5))
    assert objects.idle_timeout == 5.0
    for pool in (
        TieredPool(bytearray, [16], idle_timeout=kind(5)),
        BlockPool(idle_timeout=kind(5)),
        BufferPool(idle_timeout=kind(5)),
    ):
        assert pool.stats().created == 0
    full = ObjectPool(list, max_size=1)
    held = full.get()
    for wait in (
        lambda t: full.get(timeout=t),
        lambda t: full.get_many(1, timeout=t),
        lambda t: full.borrow(timeout=t).__enter__(),
        lambda t: asyncio.run(full.aget(timeout=t)),
        lambda t: asyncio.run(full.aborrow(timeout=t).__aenter__()),
    ):
        with pytest.raises(PoolTimeout):
            wait(kind(0))
    full.put(held)
    assert full.get(timeout=kind(5)) is held
    full.put(held)


@pytest.mark.parametrize("value", [2**64, 10**30])
def test_sizes_too_large_for_the_platform_are_refused_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"\bn is out of range"):
        BlockPool().get(Index(value))
    with pytest.raises(ValueError, match="max_block is out of range"):
        BlockPool(max_block=Index(value))
    with pytest.raises(ValueError, match="max_idle is out of range"):
        ObjectPool(list, max_idle=value)


# --- huge and odd durations ---

# As seconds, the first float whose nanoseconds exceed 2**64: a cast to a
# u64 of nanoseconds wraps it to about 5 microseconds.
BEYOND_U64_NANOS = 18446744073.709557


@pytest.mark.parametrize("idle_timeout", [BEYOND_U64_NANOS, 18446744074.0, 1e300, math.inf])
def test_a_huge_idle_timeout_never_expires(idle_timeout):
    """Issue 11, defect 7: ObjectPool(list, idle_timeout=18446744074.0)
    expired objects after about 0.29 s (the nanoseconds wrapped)."""
    objects = ObjectPool(list, idle_timeout=idle_timeout, shards=1)
    tiered = TieredPool(bytearray, [16], idle_timeout=idle_timeout, shards=1)
    blocks = BlockPool(idle_timeout=idle_timeout, shards=1)
    buffers = BufferPool(idle_timeout=idle_timeout, shards=1)
    obj, small = objects.get(), tiered.get(10)
    objects.put(obj)
    tiered.put(small)
    blocks.get(100).release()
    buffers.get().release()
    time.sleep(0.02)
    assert objects.get() is obj
    assert tiered.get(10) is small
    blocks.get(100).release()
    buffers.get().release()
    for pool in (objects, tiered, blocks, buffers):
        pool.trim(2**20)  # expired objects go first: none are
        assert pool.stats().expired == 0, pool
    assert blocks.stats().hits == buffers.stats().hits == 1


def test_a_positive_duration_below_a_nanosecond_is_one_nanosecond_not_zero():
    """A conversion that rounded 1e-12 s to 0 made a positive idle_timeout
    fail as "got 0"; zero itself is still refused."""
    assert ObjectPool(list, idle_timeout=1e-12).idle_timeout == 1e-9
    assert BlockPool(idle_timeout=5e-324).stats().created == 0
    with pytest.raises(ValueError, match="idle_timeout must be positive, got 0"):
        ObjectPool(list, idle_timeout=0.0)


@pytest.mark.parametrize("timeout", [BEYOND_U64_NANOS, 1e300, math.inf, 10**20])
def test_a_huge_timeout_waits_for_a_put(timeout):
    pool = ObjectPool(list, max_size=1)
    held = pool.get()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(pool.get(timeout=timeout)))
    waiter.start()
    time.sleep(0.05)
    assert not got, "a huge timeout ended at once"
    pool.put(held)
    waiter.join(10)
    assert got == [held]
    pool.put(held)

    async def wait_async() -> object:
        return await pool.aget(timeout=timeout)

    assert asyncio.run(wait_async()) is held
    pool.put(held)
