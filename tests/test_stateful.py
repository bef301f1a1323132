"""Model-based (stateful) tests: one hypothesis ``RuleBasedStateMachine`` per
pool kind runs random single-threaded sequences of operations against a
plain-Python model of the pool, and after every step checks every counter of
``stats()`` (and ``tier_stats()`` / the class rows), ``len()``, ``closed``
and the pool's invariants against the model.

The models predict the counters exactly, including ``max_in_use``, which the
core samples at known points (an object created, a wait started, every 64th
reuse in a shard, and every ``stats()`` call). Hooks (factory, reset,
validate, destroy) log what they are called with, so the models also check
*which* object each hook saw: a pool that hands out a destroyed object, or
one object to two holders, or validates, resets or destroys the wrong
object, fails here.

Where objects are identified only by what the pool gives back (an idle pool
with ``shards=1`` is a FIFO queue), the models check the exact order; with
more shards they check membership.

These overlap with, and go further than, the machines in
``test_object_pool.py`` (``PoolMachine``: get/put/get_many/put_many/trim/
clear) and ``test_block_pool.py`` (``BlockPoolMachine``: get/release/
exports/trim/clear): the machines here add close and everything after it,
borrow, hooks that fail (factory, reset, validate, destroy), reset on get,
prefill, foreign objects, double releases, abandoned blocks and buffers, the
per-tier and per-class rows, and ``max_in_use``.

Settings: ``derandomize=True`` and no example database, so CI runs the same
examples every time (a failure is reproducible from the log alone, and a
flaky CI run cannot come from here). Set ``SHARDPOOL_STATEFUL_EXPLORE=N`` to
run N random (not derandomized) examples per machine when hunting for bugs.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from shardpool import (
    DEFAULT_MAX_IDLE,
    Block,
    BlockPool,
    Buffer,
    BufferPool,
    ObjectPool,
    PoolClosed,
    PoolTimeout,
    TieredPool,
)

_EXPLORE = int(os.environ.get("SHARDPOOL_STATEFUL_EXPLORE", "0"))


def machine_settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=_EXPLORE or examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=not _EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


COUNTERS = (
    "created",
    "destroyed",
    "hits",
    "misses",
    "puts",
    "dropped",
    "reset_errors",
    "invalid",
    "expired",
    "waits",
    "timeouts",
    "cancelled",
)
# The core samples in_use for max_in_use on every 64th reuse in a shard.
SAMPLE_EVERY = 64


class Boom(Exception):
    """Raised by a hook told to fail."""


class BodyError(Exception):
    """Raised inside a ``with`` block."""


class Counts:
    """The counters of one core pool (one shard set), with the core's rule
    for ``in_use`` (hits + misses - puts, never below zero) and its sampling
    of ``max_in_use``."""

    def __init__(self) -> None:
        self.c = dict.fromkeys(COUNTERS, 0)
        self.peak = 0

    def __getitem__(self, name: str) -> int:
        return self.c[name]

    def bump(self, name: str, n: int = 1) -> None:
        self.c[name] += n

    @property
    def in_use(self) -> int:
        return max(0, self.c["hits"] + self.c["misses"] - self.c["puts"])

    def sample(self) -> None:
        self.peak = max(self.peak, self.in_use)

    def hit(self) -> None:
        self.c["hits"] += 1
        if self.c["hits"] % SAMPLE_EVERY == 0:
            self.sample()

    def add_hits(self, n: int) -> None:
        """A batch of reuses (get_many): counted at once, then sampled."""
        self.c["hits"] += n
        self.sample()

    def miss(self) -> None:
        self.c["created"] += 1
        self.c["misses"] += 1
        self.sample()


class Events:
    """The hook calls of one operation, consumed in order by the model."""

    def __init__(self, log: list) -> None:
        self.items = deque(log)
        log.clear()

    def expect(self, kind: str, obj=None):
        assert self.items, f"expected a {kind} hook call, got none"
        got_kind, got = self.items.popleft()
        assert got_kind == kind, f"expected a {kind} hook call, got {got_kind}"
        if obj is not None:
            assert got is obj, f"{kind} ran on the wrong object"
        return got

    def done(self) -> None:
        assert not self.items, f"unexpected hook calls: {[k for k, _ in self.items]}"


class Item:
    """A pooled object: logs its reset, carries flags telling hooks to fail."""

    serial = 0

    def __init__(self, log: list, size: int = 0) -> None:
        Item.serial += 1
        self.serial = Item.serial
        self.log = log
        self.size = size
        self.data: list = []
        self.spoiled = False  # validate returns False
        self.validate_raises = False
        self.fail_reset = False
        self.destroy_raises = False
        self.dead = False

    def reset(self) -> None:
        self.log.append(("reset", self))
        if self.fail_reset:
            raise Boom("reset")
        self.data.clear()

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<Item {self.serial} size={self.size}>"


FLAGS = ("spoiled", "validate_raises", "fail_reset", "destroy_raises")


class Hooks:
    """The factory and hooks of a model-tested pool; every call is logged."""

    def __init__(self, log: list, validate: bool) -> None:
        self.log = log
        self.factory_fails = False
        self.validating = validate

    def factory(self, size: int | None = None) -> Item:
        if self.factory_fails:
            self.log.append(("create_fail", None))
            raise Boom("factory")
        obj = Item(self.log, size or 0)
        self.log.append(("create", obj))
        return obj

    def reset(self, obj: Item) -> None:
        obj.reset()

    def validate(self, obj: Item) -> bool:
        self.log.append(("validate", obj))
        if obj.validate_raises:
            raise Boom("validate")
        return not obj.spoiled

    def destroy(self, obj: Item) -> None:
        self.log.append(("destroy", obj))
        assert not obj.dead, "destroyed twice"
        obj.dead = True
        if obj.destroy_raises:
            raise Boom("destroy")


class IdleModel:
    """Idle objects of one core pool: a FIFO with one shard, else a bag."""

    def __init__(self, fifo: bool) -> None:
        self.fifo = fifo
        self.items: list = []

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, obj) -> bool:
        return any(o is obj for o in self.items)

    def push(self, obj) -> None:
        self.items.append(obj)

    def pop(self, obj=None):
        """Takes `obj` (seen through a hook), or the next one when the pool's
        choice is not visible (then the pool must be a FIFO)."""
        if obj is None:
            assert self.fifo, "model cannot see which idle object was taken"
            return self.items.pop(0)
        for i, o in enumerate(self.items):
            if o is obj:
                assert not self.fifo or i == 0, f"took idle #{i}, not the oldest"
                return self.items.pop(i)
        raise AssertionError(f"the pool handed out {obj!r}, which was not idle")

    def take_oldest(self, objs: list) -> None:
        """`objs` were discarded oldest first (trim, close)."""
        for obj in objs:
            self.pop(obj)


REJECTED = object()  # an idle object validate refused


class Outcome:
    """What the model says a call does: returns `value`, or raises `error`."""

    def __init__(self, value=None, error: type[BaseException] | None = None) -> None:
        self.value = value
        self.error = error


def call(fn):
    """Runs `fn`; returns (value, exception) for comparison with the model."""
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


def check(outcome: Outcome, exc: BaseException | None) -> None:
    if outcome.error is None:
        assert exc is None, f"unexpected {exc!r}"
    else:
        assert isinstance(exc, outcome.error), f"expected {outcome.error.__name__}, got {exc!r}"


def close_and_check(pool, track: bool, out: int) -> None:
    """close(); with track=True it warns where the objects still out were
    acquired (ResourceWarning), and only then."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pool.close() is None
    expected = [ResourceWarning] if track and out else []
    assert [w.category for w in caught] == expected
    if expected:
        assert f"closed with {out} " in str(caught[0].message)


def quiet_close(pool) -> None:
    """close() at teardown, whatever is still out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        pool.close()


def check_outstanding(pool, track: bool, out: int) -> None:
    if track:
        assert len(pool.outstanding()) == out
    else:
        with pytest.raises(RuntimeError, match="track"):
            pool.outstanding()


class CoreModel:
    """One core pool of Python objects (an ObjectPool, or one tier of a
    TieredPool): its counters and idle objects, and what each operation does
    to them, hook call by hook call."""

    def __init__(self, owner: HookedMachine, cap: int, fifo: bool, max_size=None) -> None:
        self.owner = owner
        self.cap = cap
        self.max_size = max_size
        self.m = Counts()
        self.idle = IdleModel(fifo)
        self.closed = False
        self.used = False
        self.taking = 0  # objects a get_many has taken so far

    def destroyed(self, ev: Events, obj: Item) -> None:
        ev.expect("destroy", obj)
        self.m.bump("destroyed")
        self.owner.destroy_errors += obj.destroy_raises

    def store(self, ev: Events, obj: Item) -> None:
        """A clean object goes idle, or is dropped when max_idle are idle."""
        if len(self.idle) < self.cap:
            self.idle.push(obj)
        else:
            self.m.bump("dropped")
            self.destroyed(ev, obj)

    def alive(self, held: int) -> int:
        return held + len(self.idle) + self.taking

    def take_idle(self, ev: Events) -> Outcome | None:
        """The next idle object, reset (when due on get) and validated as
        `Pool::vet` does: `None` if none is idle, `Outcome(REJECTED)` if
        validate refused it (destroyed), `Outcome(error=...)` if a hook
        raised (destroyed too)."""
        if not len(self.idle):
            return None
        return self.vet(ev, self.idle.pop)

    def vet(self, ev: Events, pop) -> Outcome:
        """`Pool::vet` of an idle object that `pop(seen)` takes: `seen` is
        the object a hook ran on, or None when no hook shows it."""
        o = self.owner
        obj = None
        if o.resetting and o.reset_on == "get":
            obj = pop(ev.expect("reset"))
            if obj.fail_reset:
                self.m.bump("reset_errors")
                self.destroyed(ev, obj)
                return Outcome(error=Boom)
            o.expected_data[obj.serial] = []
        if o.hooks.validating:
            got = ev.expect("validate", obj)
            if obj is None:
                obj = pop(got)
            if obj.validate_raises or obj.spoiled:
                self.m.bump("invalid")
                self.destroyed(ev, obj)
                return Outcome(error=Boom) if obj.validate_raises else Outcome(REJECTED)
        if obj is None:
            obj = pop(None)
        return Outcome(obj)

    def acquire(self, ev: Events, may_wait: bool, held: int) -> Outcome:
        """One object, as `Pool::acquire` gets it (one thread: never waits)."""
        o = self.owner
        while (taken := self.take_idle(ev)) is not None:
            if taken.value is REJECTED:
                continue
            if taken.error is None:
                self.m.hit()
            return taken
        if self.max_size is not None and self.alive(held) >= self.max_size:
            if may_wait:
                self.m.bump("waits")
                self.m.sample()
                self.m.bump("timeouts")
            return Outcome(error=PoolTimeout)
        if o.hooks.factory_fails:
            ev.expect("create_fail")
            return Outcome(error=Boom)
        obj = ev.expect("create")
        o.expected_data[obj.serial] = []
        self.m.miss()
        self.used = True
        return Outcome(obj)

    def batch(self, ev: Events, n: int) -> Outcome:
        """`Pool::get_many` once its `n` units are had (all free at once):
        up to `n` idle objects are taken together, then checked in order (a
        rejected one is replaced by the next idle one while any is left,
        else by a new one made in its slot), then the rest are made. Only a
        complete batch is counted (hits, misses, one sample); on failure
        what it took goes back uncounted (no put, no hit): first the objects
        it had checked or made, then those it had not checked yet."""
        o = self.owner
        fifo = self.idle.fifo
        k = min(n, len(self.idle))
        # With one shard the taken objects are known; with more, hooks show
        # each one as it is checked (they stay in the bag until then, and
        # `pending` says how many of the bag are the batch's).
        taken = deque(self.idle.items[:k]) if fifo else None
        if fifo:
            del self.idle.items[:k]
        pending = k
        slots = n - k
        out: list = []
        hits = misses = rejects = 0
        error: Outcome | None = None
        max_rejects = self.cap + o.shards

        def pop_taken(seen):
            if fifo:
                obj = taken.popleft()
                assert seen is None or seen is obj, "checked the wrong object"
                return obj
            return self.idle.pop(seen)

        while pending:
            pending -= 1
            one = self.vet(ev, pop_taken)
            if one.error is not None:
                error = one
                break
            if one.value is REJECTED:
                rejects += 1
                in_shards = len(self.idle) - (0 if fifo else pending)
                if rejects < max_rejects and in_shards:
                    pending += 1  # the next idle object replaces it
                    if fifo:
                        taken.appendleft(self.idle.items.pop(0))
                else:
                    slots += 1
                continue
            out.append(one.value)
            hits += 1
        while error is None and slots:
            slots -= 1
            if o.hooks.factory_fails:
                ev.expect("create_fail")
                error = Outcome(error=Boom)
                break
            obj = ev.expect("create")
            o.expected_data[obj.serial] = []
            self.m.bump("created")
            self.used = True
            out.append(obj)
            misses += 1
        if error is not None:
            for obj in out:
                if len(self.idle) - (0 if fifo else pending) < self.cap:
                    self.idle.push(obj)
                else:
                    self.m.bump("dropped")
                    self.destroyed(ev, obj)
            if fifo:
                for obj in taken:
                    self.store(ev, obj)
            else:
                # Back from the batch to the shards, where they are in the
                # bag already: those without room are dropped (shown by
                # their destroy hook).
                for _ in range(pending):
                    if len(self.idle) - pending >= self.cap:
                        assert ev.items, "expected a drop"
                        assert ev.items[0][0] == "destroy", "expected a drop"
                        victim = self.idle.pop(ev.items[0][1])
                        self.m.bump("dropped")
                        self.destroyed(ev, victim)
                    pending -= 1
            return error
        self.m.c["hits"] += hits
        self.m.c["misses"] += misses
        self.m.sample()
        return Outcome(out)

    def put(self, ev: Events, obj: Item, reset: bool = True) -> Outcome:
        """`Pool::put_inner` for an object the ledger (if any) accepted."""
        self.used = True
        self.m.bump("puts")
        return self.take_in(ev, obj, reset)

    def adopt(self, ev: Events, obj: Item) -> Outcome:
        """`Pool::adopt`: an object another tier handed out joins this one
        (it came back at this tier's size): counted as created here, then
        kept as a returned object is."""
        self.used = True
        self.m.bump("created")
        return self.take_in(ev, obj, reset=True)

    def depart(self, dropped: bool) -> None:
        """`Pool::count_departure`: an object this tier handed out came back
        and leaves it (moved to another tier, or destroyed by the caller)."""
        self.m.bump("puts")
        if dropped:
            self.m.bump("dropped")
        self.m.bump("destroyed")

    def take_in(self, ev: Events, obj: Item, reset: bool) -> Outcome:
        """`Pool::take_in`: destroyed if closed, else reset (when due on put)
        and stored."""
        o = self.owner
        if self.closed:
            self.destroyed(ev, obj)
            return Outcome()
        if reset and o.resetting and o.reset_on == "put":
            ev.expect("reset", obj)
            if obj.fail_reset:
                self.m.bump("reset_errors")
                self.destroyed(ev, obj)
                return Outcome(error=Boom)
            o.expected_data[obj.serial] = []
        self.store(ev, obj)
        return Outcome()

    def trim(self, ev: Events, keep: int) -> int:
        """Destroys the oldest idle objects beyond `keep` (none expire here)."""
        surplus = max(0, len(self.idle) - keep)
        gone = [ev.expect("destroy") for _ in range(surplus)]
        self.idle.take_oldest(gone)
        for obj in gone:
            self.m.bump("destroyed")
            self.owner.destroy_errors += obj.destroy_raises
        return surplus

    def close(self, ev: Events) -> None:
        self.trim(ev, 0)
        self.closed = True

    def would_wait(self, held: int) -> bool:
        """Whether a get could find no idle object to hand out and no room."""
        return (
            self.max_size is not None
            and self.alive(held) >= self.max_size
            and not any(not (o.spoiled or o.validate_raises) for o in self.idle.items)
        )


class HookedMachine(RuleBasedStateMachine):
    """What the ObjectPool and TieredPool machines share: the hooks, the
    objects held, and the checks made on every object handed out."""

    def setup_hooks(self, reset: str, reset_on: str, validate: bool, shards: int) -> int:
        """Returns the shard count to use."""
        self.log: list = []
        self.hooks = Hooks(self.log, validate)
        self.resetting = reset != "off"
        self.reset_on = reset_on
        self.reset_arg = {"auto": None, "callable": self.hooks.reset, "off": False}[reset]
        self.held: list[Item] = []
        self.expected_data: dict[int, list] = {}
        self.returned: list[Item] = []  # given back at some point
        self.foreign = 0  # objects the pool did not make but took in
        self.destroy_errors = 0
        self.next_token = 0
        self.unraisable: list = []
        self.old_hook = sys.unraisablehook
        sys.unraisablehook = self.unraisable.append
        # Which idle object a get takes is visible through a hook call only
        # if one runs on the idle object; otherwise the model needs a FIFO.
        visible = validate or (self.resetting and reset_on == "get")
        return shards if visible else 1

    def teardown(self):
        if hasattr(self, "pool"):
            quiet_close(self.pool)
            sys.unraisablehook = self.old_hook

    def take_out(self, obj: Item, seen: tuple | None = None) -> None:
        """A holder got `obj`; `seen` is (dead, data) as the holder saw it,
        when the model runs after the holder has given it back already."""
        assert isinstance(obj, Item)
        dead, data = seen or (obj.dead, list(obj.data))
        assert not dead, "handed out a destroyed object"
        assert all(obj is not h for h in self.held), "handed out an object held already"
        assert data == self.expected_data[obj.serial], "object not reset (or changed)"
        self.next_token += 1
        if seen is None:
            obj.data.append(self.next_token)
        self.expected_data[obj.serial] = [*data, self.next_token]
        self.held.append(obj)

    def give(self, obj: Item) -> None:
        self.held = [h for h in self.held if h is not obj]
        self.returned.append(obj)

    def borrow_and_check(
        self, borrow, body_raises: bool, model_get, model_put
    ) -> tuple[bool, BaseException | None]:
        """Runs a borrow and checks it against the model; whether the block
        was entered (an object got, and put back on exit), and what the
        `with` statement raised."""
        got: list = []

        def run():
            with borrow() as obj:
                got.append((obj, (obj.dead, list(obj.data))))
                obj.data.append(self.next_token + 1)
                self.log.append(("body", obj))
                if body_raises:
                    raise BodyError

        _, exc = call(run)
        ev = Events(self.log)
        outcome = model_get(ev)
        if outcome.error is None:
            obj = ev.expect("body")
            assert obj is outcome.value is got[0][0]
            self.take_out(obj, seen=got[0][1])
            put = model_put(ev, obj)
            if put.error is not None:
                outcome = put
                if body_raises:
                    assert isinstance(exc.__context__, BodyError), "body error lost"
            elif body_raises:
                outcome = Outcome(error=BodyError)
        ev.done()
        check(outcome, exc)
        return bool(got), exc

    def check_objects(self, idle: list) -> None:
        assert not any(o.dead for o in self.held + idle), "a destroyed object is in use"
        assert len(self.unraisable) == self.destroy_errors
        assert all(isinstance(u.exc_value, Boom) for u in self.unraisable)


HOOK_OPTIONS = {
    "track": st.booleans(),
    "reset": st.sampled_from(["auto", "callable", "off"]),
    "reset_on": st.sampled_from(["put", "get"]),
    "validate": st.booleans(),
    "idle_timeout": st.sampled_from([None, 3600.0]),
}
# Mostly working factories: a failing one changes nothing, so it is drawn rarely.
FACTORY_FAILS = st.integers(0, 4).map(lambda i: i == 0)


# --- ObjectPool --------------------------------------------------------------


class ObjectPoolMachine(HookedMachine):
    """ObjectPool, bounded or not, checked or not, with every hook."""

    @initialize(
        max_size=st.none() | st.integers(1, 4),
        max_idle=st.none() | st.integers(0, 4),
        shards=st.integers(1, 3),
        checked=st.booleans(),
        prefill=st.integers(0, 2),
        **HOOK_OPTIONS,
    )
    def make_pool(
        self,
        max_size,
        max_idle,
        shards,
        checked,
        prefill,
        track,
        reset,
        reset_on,
        validate,
        idle_timeout,
    ):
        shards = self.setup_hooks(reset, reset_on, validate, shards)
        self.shards = shards
        self.track = track
        # What the callers themselves did, counted here independently of
        # the model: objects they got and gave back, PoolTimeouts they saw.
        self.callers = dict.fromkeys(("gets", "puts", "timeouts"), 0)
        if max_size is None:
            cap = DEFAULT_MAX_IDLE if max_idle is None else max_idle
        else:
            cap = min(max_size, 65536) if max_idle is None else min(max_idle, max_size)
        prefill = min(prefill, cap)
        self.pool = ObjectPool(
            self.hooks.factory,
            max_size=max_size,
            max_idle=max_idle,
            shards=shards,
            checked=checked,
            reset=self.reset_arg,
            reset_on=reset_on,
            validate=self.hooks.validate if validate else None,
            destroy=self.hooks.destroy,
            idle_timeout=idle_timeout,
            prefill=prefill,
            track=track,
            name="model" if track else None,
        )
        self.core = CoreModel(self, cap, fifo=shards == 1, max_size=max_size)
        self.checked = checked or max_size is not None
        ev = Events(self.log)
        for _ in range(prefill):
            obj = ev.expect("create")
            self.core.m.bump("created")
            self.core.idle.push(obj)
            self.expected_data[obj.serial] = []
        ev.done()

    def model_get(self, ev: Events) -> Outcome:
        if self.core.closed:
            return Outcome(error=PoolClosed)
        return self.core.acquire(ev, may_wait=True, held=len(self.held))

    def model_put(self, ev: Events, obj: Item, reset: bool = True) -> Outcome:
        self.give(obj)
        return self.core.put(ev, obj, reset)

    def timeout(self, patient: bool) -> float:
        # Wait only where the model says no waiting can happen, so that a
        # model error shows up as a PoolTimeout after 5 s, not as a hang.
        return 5.0 if patient and not self.core.would_wait(len(self.held)) else 0

    # -- rules --

    def tally(self, exc: BaseException | None, gets: int = 0, puts: int = 0) -> None:
        """The callers' own count of one call that raised `exc` (or not)."""
        if isinstance(exc, PoolTimeout):
            self.callers["timeouts"] += 1
        if exc is None:
            self.callers["gets"] += gets
        if not isinstance(exc, ValueError):
            # A put that raised because its reset failed was still made.
            self.callers["puts"] += puts

    @rule(patient=st.booleans(), factory_fails=FACTORY_FAILS)
    def get(self, patient, factory_fails):
        timeout = self.timeout(patient)
        self.hooks.factory_fails = factory_fails
        value, exc = call(lambda: self.pool.get(timeout=timeout))
        self.tally(exc, gets=1)
        ev = Events(self.log)
        outcome = self.model_get(ev)
        self.hooks.factory_fails = False
        ev.done()
        check(outcome, exc)
        if exc is None:
            assert value is outcome.value
            self.take_out(value)
        elif isinstance(exc, PoolTimeout):
            assert "max_size" in str(exc)

    @rule(n=st.integers(0, 5), factory_fails=FACTORY_FAILS)
    def get_many(self, n, factory_fails):
        self.hooks.factory_fails = factory_fails
        value, exc = call(lambda: self.pool.get_many(n, timeout=0))
        self.tally(exc, gets=n)
        ev = Events(self.log)
        core = self.core
        if core.max_size is not None and n > core.max_size:
            self.hooks.factory_fails = False
            ev.done()
            assert isinstance(exc, ValueError), exc
            assert "max_size" in str(exc)
            return
        if core.closed:
            outcome = Outcome(error=PoolClosed)
        elif n == 0:
            outcome = Outcome([])
        elif core.max_size is not None and core.max_size - len(self.held) < n:
            # Not n units free at once (idle objects count, whatever
            # validate will say): it queues, holding nothing, takes and
            # makes nothing, and times out.
            core.m.bump("waits")
            core.m.sample()
            core.m.bump("timeouts")
            outcome = Outcome(error=PoolTimeout)
        else:
            outcome = core.batch(ev, n)
        self.hooks.factory_fails = False
        ev.done()
        check(outcome, exc)
        if exc is None:
            assert isinstance(value, list)
            assert len(value) == n
            assert all(a is b for a, b in zip(value, outcome.value, strict=True))
            for obj in value:
                self.take_out(obj)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def put(self, data):
        obj = data.draw(st.sampled_from(self.held))
        _, exc = call(lambda: self.pool.put(obj))
        self.tally(exc, puts=1)
        ev = Events(self.log)
        outcome = self.model_put(ev, obj)
        ev.done()
        check(outcome, exc)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def put_many(self, data):
        objs = data.draw(st.lists(st.sampled_from(self.held), unique_by=id))
        _, exc = call(lambda: self.pool.put_many(objs))
        self.tally(exc, puts=len(objs))
        ev = Events(self.log)
        first = Outcome()
        for obj in objs:
            one = self.model_put(ev, obj)
            if first.error is None:
                first = one
        ev.done()
        check(first, exc)

    @rule(patient=st.booleans(), body_raises=st.booleans())
    def borrow(self, patient, body_raises):
        timeout = self.timeout(patient)
        entered, exc = self.borrow_and_check(
            lambda: self.pool.borrow(timeout=timeout), body_raises, self.model_get, self.model_put
        )
        if entered:
            self.callers["gets"] += 1
            self.callers["puts"] += 1
        elif isinstance(exc, PoolTimeout):
            self.callers["timeouts"] += 1

    @precondition(lambda self: self.held)
    @rule(data=st.data(), flag=st.sampled_from(FLAGS))
    def spoil(self, data, flag):
        """Tells a hook to fail on this object later."""
        setattr(data.draw(st.sampled_from(self.held)), flag, True)

    @precondition(lambda self: self.checked)
    @rule(data=st.data())
    def put_not_out_is_refused(self, data):
        out = [r for r in self.returned if all(r is not h for h in self.held)]
        obj = data.draw(st.sampled_from([*out, Item(self.log)]))
        with pytest.raises(ValueError, match="not handed out"):
            self.pool.put(obj)
        Events(self.log).done()

    @precondition(lambda self: self.checked and self.held)
    @rule(data=st.data())
    def put_many_twice_is_refused(self, data):
        obj = data.draw(st.sampled_from(self.held))
        others = [h for h in self.held if h is not obj]
        with pytest.raises(ValueError, match="not handed out"):
            self.pool.put_many([*others, obj, obj])
        Events(self.log).done()

    @precondition(lambda self: not self.checked)
    @rule()
    def put_foreign_into_unchecked_pool(self):
        """An unchecked pool takes objects it did not make (documented)."""
        obj = Item(self.log)
        self.expected_data[obj.serial] = []
        self.foreign += 1
        _, exc = call(lambda: self.pool.put(obj))
        self.tally(exc, puts=1)
        ev = Events(self.log)
        outcome = self.model_put(ev, obj)
        ev.done()
        check(outcome, exc)

    @rule(keep=st.integers(0, 4))
    def trim(self, keep):
        n = self.pool.trim(keep=keep)
        ev = Events(self.log)
        assert n == self.core.trim(ev, keep)
        ev.done()

    @rule()
    def clear(self):
        n = self.pool.clear()
        ev = Events(self.log)
        assert n == self.core.trim(ev, 0)
        ev.done()

    @rule()
    def close(self):
        close_and_check(self.pool, self.track, len(self.held))
        ev = Events(self.log)
        self.core.close(ev)
        ev.done()

    @invariant()
    def stats_match_the_model(self):
        s = self.pool.stats()
        m = self.core.m
        m.sample()  # stats() samples in_use too
        d = s.as_dict()
        for name in COUNTERS:
            assert getattr(s, name) == m[name] == d[name], name
        assert s.in_use == m.in_use == d["in_use"]
        assert s.idle == len(self.core.idle) == len(self.pool) == d["idle"]
        assert s.max_in_use == m.peak == d["max_in_use"]
        gets = s.hits + s.misses
        assert s.hit_rate == d["hit_rate"] == (s.hits / gets if gets else 0.0)
        # Each counter against the callers' own tally, not only against the
        # model (issue 11, defect 10): handed out what callers got, returned
        # what they gave back, timed out what raised PoolTimeout.
        assert gets == self.callers["gets"]
        assert s.puts == self.callers["puts"]
        assert s.timeouts == self.callers["timeouts"]
        assert s.cancelled == 0 == d["cancelled"]
        assert self.pool.closed == self.core.closed
        # Nothing lost, nothing made up: every object made (or taken in) is
        # held, idle or destroyed.
        assert s.created + self.foreign == s.destroyed + s.idle + len(self.held)
        if not self.foreign:
            assert s.in_use == len(self.held)
            assert s.created == s.destroyed + s.idle + s.in_use
        if self.core.max_size is not None:
            assert self.core.alive(len(self.held)) <= self.core.max_size
        assert s.idle <= self.pool.max_idle
        check_outstanding(self.pool, self.track, len(self.held))
        self.check_objects(self.core.idle.items)


ObjectPoolMachine.TestCase.settings = machine_settings(examples=300, steps=40)
test_object_pool_model = ObjectPoolMachine.TestCase


# --- TieredPool --------------------------------------------------------------

TIER_SIZES = (8, 32, 128)


class CallerTally:
    """What the callers of one tier did, counted by the callers themselves
    (which tier served each get, where each object came from and went)."""

    def __init__(self) -> None:
        self.made = 0  # objects this tier handed out first (the factory's)
        self.gets = 0  # objects handed out by this tier
        self.puts = 0  # returns the pool must count here
        self.moved_in = 0
        self.moved_out = 0


class TieredPoolMachine(HookedMachine):
    """TieredPool: routing by size, filing by size_of, oversize objects and
    objects smaller than every tier, objects that change tier, checked or
    not, one core pool per tier, every hook."""

    @initialize(
        caps=st.tuples(*[st.none() | st.integers(0, 3)] * len(TIER_SIZES)),
        shards=st.integers(1, 3),
        size_of=st.sampled_from(["len", "attribute"]),
        checked=st.booleans(),
        **HOOK_OPTIONS,
    )
    def make_pool(
        self, caps, shards, size_of, checked, track, reset, reset_on, validate, idle_timeout
    ):
        shards = self.setup_hooks(reset, reset_on, validate, shards)
        self.track = track
        self.checked = checked
        specs = [s if c is None else (s, c) for s, c in zip(TIER_SIZES, caps, strict=True)]
        self.pool = TieredPool(
            self.hooks.factory,
            specs,
            size_of=None if size_of == "len" else (lambda obj: obj.size),
            reset=self.reset_arg,
            reset_on=reset_on,
            validate=self.hooks.validate if validate else None,
            destroy=self.hooks.destroy,
            idle_timeout=idle_timeout,
            shards=shards,
            checked=checked,
            track=track,
        )
        self.tiers = {
            size: CoreModel(self, DEFAULT_MAX_IDLE if cap is None else cap, fifo=shards == 1)
            for size, cap in zip(TIER_SIZES, caps, strict=True)
        }
        self.outside = Counts()  # oversize objects, and objects no tier takes
        self.moved = 0  # objects that came back at another tier's size (checked)
        self.origin: dict[int, int | None] = {}  # serial -> tier (None: oversize)
        self.seen: set[int] = set()  # serials handed out or taken in so far
        # The callers' own tally, per tier (None: outside the tiers).
        self.calls = {size: CallerTally() for size in (*TIER_SIZES, None)}
        self.peak = 0
        self.closed = False

    @staticmethod
    def filing(size: int) -> int | None:
        """The tier a returned object of `size` is filed in (the largest of
        at most `size`), or None if none takes it."""
        if not TIER_SIZES[0] <= size <= TIER_SIZES[-1]:
            return None
        return max(t for t in TIER_SIZES if t <= size)

    def model_get(self, ev: Events, size: int) -> Outcome:
        if self.closed:
            return Outcome(error=PoolClosed)
        fits = [t for t in TIER_SIZES if t >= size]
        if not fits:
            if self.hooks.factory_fails:
                ev.expect("create_fail")
                return Outcome(error=Boom)
            obj = ev.expect("create")
            assert obj.size == size, "an oversize object is made to measure"
            self.expected_data[obj.serial] = []
            self.outside.bump("created")
            self.outside.bump("misses")
            self.handed_out(obj, None)
            return Outcome(obj)
        core = self.tiers[fits[0]]
        core.used = True
        outcome = core.acquire(ev, may_wait=True, held=0)
        if outcome.error is None:
            assert len(outcome.value) >= size, "handed out an object too small"
            self.handed_out(outcome.value, fits[0])
        return outcome

    def handed_out(self, obj: Item, tier: int | None) -> None:
        self.origin[obj.serial] = tier
        self.calls[tier].gets += 1
        if obj.serial not in self.seen:
            self.seen.add(obj.serial)
            self.calls[tier].made += 1

    def destroy_outside(self, ev: Events, obj: Item) -> Outcome:
        """No tier takes it (or oversize after close): destroyed, counted
        outside the tiers (as dropped, unless the pool is closed)."""
        for name in ("puts", "destroyed") if self.closed else ("puts", "destroyed", "dropped"):
            self.outside.bump(name)
        ev.expect("destroy", obj)
        self.destroy_errors += obj.destroy_raises
        return Outcome()

    def model_put(self, ev: Events, obj: Item) -> Outcome:
        if obj.size < 0:
            return Outcome(error=ValueError)  # size_of refused: nothing changes
        if self.checked and all(obj is not h for h in self.held):
            return Outcome(error=ValueError)  # foreign, or returned already
        self.give(obj)
        self.seen.add(obj.serial)
        filed = self.filing(obj.size)
        if not self.checked:
            # No record of where it came from: counted where its size files it.
            self.origin.pop(obj.serial, None)
            self.calls[filed].puts += 1
            if filed is None:
                return self.destroy_outside(ev, obj)
            return self.tiers[filed].put(ev, obj)
        origin = self.origin.pop(obj.serial)
        self.calls[origin].puts += 1
        if origin is None:  # an oversize object
            if filed is None or self.closed:
                return self.destroy_outside(ev, obj)
            self.outside.bump("puts")
            self.outside.bump("destroyed")
            return self.move(ev, obj, None, filed)
        if filed == origin or self.closed:
            return self.tiers[origin].put(ev, obj)
        if filed is None:
            self.tiers[origin].depart(dropped=True)
            ev.expect("destroy", obj)
            self.destroy_errors += obj.destroy_raises
            return Outcome()
        self.tiers[origin].depart(dropped=False)
        return self.move(ev, obj, origin, filed)

    def move(self, ev: Events, obj: Item, origin: int | None, tier: int) -> Outcome:
        """It grew or shrank into `tier`: it joins that tier."""
        self.moved += 1
        self.calls[origin].moved_out += 1
        self.calls[tier].moved_in += 1
        return self.tiers[tier].adopt(ev, obj)

    def total(self, name: str) -> int:
        n = self.outside[name] + sum(core.m[name] for core in self.tiers.values())
        # A move counts destroyed in one tier and created in another: the
        # totals count the factory's and destroy's calls.
        return n - self.moved if name in ("created", "destroyed") else n

    # -- rules --

    @rule(size=st.integers(0, 200), factory_fails=FACTORY_FAILS)
    def get(self, size, factory_fails):
        self.hooks.factory_fails = factory_fails
        value, exc = call(lambda: self.pool.get(size))
        ev = Events(self.log)
        outcome = self.model_get(ev, size)
        self.hooks.factory_fails = False
        ev.done()
        check(outcome, exc)
        if exc is None:
            assert value is outcome.value
            self.take_out(value)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def put(self, data):
        obj = data.draw(st.sampled_from(self.held))
        _, exc = call(lambda: self.pool.put(obj))
        ev = Events(self.log)
        outcome = self.model_put(ev, obj)
        ev.done()
        check(outcome, exc)

    @rule(size=st.integers(0, 200), body_raises=st.booleans())
    def borrow(self, size, body_raises):
        self.borrow_and_check(
            lambda: self.pool.borrow(size),
            body_raises,
            lambda ev: self.model_get(ev, size),
            self.model_put,
        )

    @precondition(lambda self: self.held)
    @rule(data=st.data(), flag=st.sampled_from(FLAGS))
    def spoil(self, data, flag):
        setattr(data.draw(st.sampled_from(self.held)), flag, True)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), size=st.sampled_from([-1, 0, 7, 8, 9, 31, 32, 100, 128, 129, 500]))
    def resize(self, data, size):
        """The holder changes the object's size: it is filed by its new size
        (a negative size makes size_of fail, and put with it)."""
        data.draw(st.sampled_from(self.held)).size = size

    @precondition(lambda self: not self.checked)
    @rule(size=st.sampled_from([0, 8, 20, 32, 128, 300]))
    def put_foreign(self, size):
        """The pool is unchecked: it files objects it did not make."""
        obj = Item(self.log, size)
        self.expected_data[obj.serial] = []
        self.foreign += 1
        _, exc = call(lambda: self.pool.put(obj))
        ev = Events(self.log)
        outcome = self.model_put(ev, obj)
        ev.done()
        check(outcome, exc)

    @precondition(lambda self: self.checked)
    @rule(data=st.data(), size=st.sampled_from([0, 8, 20, 32, 128, 300]))
    def put_not_out_is_refused(self, data, size):
        """The pool is checked: an object returned already, or one it never
        handed out, is refused and nothing changes (the invariant checks)."""
        out = [r for r in self.returned if all(r is not h for h in self.held)]
        obj = data.draw(st.sampled_from([*out, Item(self.log, size)]))
        with pytest.raises(ValueError, match="not handed out"):
            self.pool.put(obj)
        Events(self.log).done()

    @rule(keep=st.integers(0, 3))
    def trim(self, keep):
        n = self.pool.trim(keep=keep)
        ev = Events(self.log)
        assert n == sum(core.trim(ev, keep) for core in self.tiers.values())
        ev.done()

    @rule()
    def clear(self):
        n = self.pool.clear()
        ev = Events(self.log)
        assert n == sum(core.trim(ev, 0) for core in self.tiers.values())
        ev.done()

    @rule()
    def close(self):
        close_and_check(self.pool, self.track, len(self.held))
        ev = Events(self.log)
        for core in self.tiers.values():
            core.close(ev)
        ev.done()
        self.closed = True

    @invariant()
    def stats_match_the_model(self):
        s = self.pool.stats()
        tier_stats = self.pool.tier_stats()
        # Tiered stats sample each tier's in_use, then take the larger of the
        # merged in_use and the busiest tier's peak.
        for core in self.tiers.values():
            if core.used:
                core.m.sample()
        in_use = max(0, self.total("hits") + self.total("misses") - self.total("puts"))
        self.peak = max(self.peak, in_use, *(core.m.peak for core in self.tiers.values()))
        d = s.as_dict()
        for name in COUNTERS:
            assert getattr(s, name) == self.total(name) == d[name], name
        idle = sum(len(core.idle) for core in self.tiers.values())
        assert s.idle == idle == len(self.pool) == d["idle"]
        assert s.in_use == in_use == d["in_use"]
        assert s.max_in_use == self.peak == d["max_in_use"]
        assert sorted(tier_stats) == list(TIER_SIZES)
        for size, core in self.tiers.items():
            t = tier_stats[size]
            for name in COUNTERS:
                assert getattr(t, name) == core.m[name], (size, name)
            assert (t.idle, t.in_use, t.max_in_use) == (len(core.idle), core.m.in_use, core.m.peak)
        assert self.pool.tiers == [(size, core.cap) for size, core in self.tiers.items()]
        assert self.pool.closed == self.closed
        assert self.pool.checked == self.checked
        assert s.created + self.foreign == s.destroyed + s.idle + len(self.held)
        if not self.foreign:
            assert s.in_use == len(self.held)
        self.check_the_callers_tally(s, tier_stats)
        all_idle = [o for core in self.tiers.values() for o in core.idle.items]
        for core_size, core in self.tiers.items():
            assert all(o.size >= core_size for o in core.idle.items), "misfiled"
        check_outstanding(self.pool, self.track, len(self.held))
        self.check_objects(all_idle)

    def check_the_callers_tally(self, s, tier_stats) -> None:
        """Every tier's counters against what its callers did: each object
        handed out by the tier is a hit or a miss there; each return of one
        of them is a put there (checked; unchecked, where its size files
        it); what is out of it is its in_use; and, checked, every tier
        balances once the operation is over."""
        outside = self.calls[None]
        assert s.hits + s.misses == sum(c.gets for c in self.calls.values())
        assert s.puts == sum(c.puts for c in self.calls.values())
        assert (self.outside["misses"], self.outside["puts"]) == (outside.gets, outside.puts)
        for size in TIER_SIZES:
            t, c = tier_stats[size], self.calls[size]
            assert t.hits + t.misses == c.gets, (size, "gets")
            assert t.puts == c.puts, (size, "puts")
            if not self.checked:
                continue
            out = sum(1 for h in self.held if self.origin[h.serial] == size)
            assert t.in_use == c.gets - c.puts == out, (size, "in_use")
            assert t.created == t.destroyed + t.idle + t.in_use, (size, "balance")
            assert t.created == c.made + c.moved_in, (size, "created")
            assert t.misses == c.made, (size, "misses")
        if self.checked:
            out = sum(1 for h in self.held if self.origin[h.serial] is None)
            assert outside.gets - outside.puts == out
            assert s.created == sum(c.made for c in self.calls.values())


TieredPoolMachine.TestCase.settings = machine_settings(examples=200, steps=40)
test_tiered_pool_model = TieredPoolMachine.TestCase


# --- BlockPool ---------------------------------------------------------------


def address(buffer) -> int:
    """Where the memory of a writable buffer starts (its identity)."""
    view = memoryview(buffer)
    char = (ctypes.c_char * 0).from_buffer(view)
    start = ctypes.addressof(char)
    del char
    view.release()  # raises if the address probe left an export behind
    return start


class Memory:
    """One allocation as the model knows it: where it is, and its bytes."""

    def __init__(self, start: int, capacity: int) -> None:
        self.start = start
        self.capacity = capacity
        self.content = bytearray(capacity)  # new memory is zero


POISON = 0xDB  # what zero="poison" fills returned blocks with


class Held:
    """A block out of the pool, with the pattern its holder wrote, and what
    keeps its memory from the pool: the holder (until it lets go), the
    ``Block`` object (while the model refers to it), its exports (``views``)
    and ``raw`` arrays (``np.ndarray(buffer=block)``: the address and a
    reference to the block, no export)."""

    def __init__(self, block: Block, memory: Memory | None, pattern: int) -> None:
        self.block: Block | None = block
        self.memory = memory
        self.pattern = pattern
        self.capacity = block.capacity
        self.length = len(block)
        self.views: list = []
        self.raw: list = []
        self.exported = False  # at some point: the memory then waits for the object
        self.poisoned = False  # filled with POISON at its release

    def expected(self) -> bytes:
        """What a view or a raw array of the block reads."""
        return bytes([POISON if self.poisoned else self.pattern]) * self.length


class BlockCounts:
    """The counters a class row (or the oversize path) reports."""

    NAMES = ("hits", "misses", "puts", "created", "destroyed", "dropped", "expired")

    def __init__(self) -> None:
        self.c = dict.fromkeys(self.NAMES, 0)

    def bump(self, *names: str) -> None:
        for name in names:
            self.c[name] += 1

    @property
    def in_use(self) -> int:
        return self.c["hits"] + self.c["misses"] - self.c["puts"]


class BlockPoolMachine(RuleBasedStateMachine):
    """BlockPool: size classes, the shared idle byte cap, zero modes, exports
    (memoryview and numpy), with-blocks left while views are alive, raw
    arrays that keep the address without an export, the memory of an
    exported block coming back only with its ``Block`` object (and of one
    never exported, at once), abandoned blocks, close, and every refusal.
    With one shard the model knows every allocation by address and content,
    so a block handed to two holders, memory handed on while a view or a raw
    array can still reach it, or a holder seeing bytes it should not, fails
    at once."""

    @initialize(
        layout=st.sampled_from(["explicit", "default"]),
        caps=st.tuples(*[st.none() | st.integers(0, 3)] * 3),
        max_block=st.sampled_from([100, 256]),
        max_idle_bytes=st.none() | st.integers(0, 3000),
        zero=st.sampled_from(["never", "release", "acquire", "poison"]),
        alignment=st.sampled_from([8, 64, 4096]),
        shards=st.integers(1, 2),
        idle_timeout=st.sampled_from([None, 3600.0]),
        track=st.booleans(),
    )
    def make_pool(
        self, layout, caps, max_block, max_idle_bytes, zero, alignment, shards, idle_timeout, track
    ):
        self.track = track
        budget = 64 << 20 if max_idle_bytes is None else max_idle_bytes
        if layout == "explicit":
            sizes = (64, 256, 1024)
            self.pool = BlockPool(
                classes=[s if c is None else (s, c) for s, c in zip(sizes, caps, strict=True)],
                max_idle_bytes=max_idle_bytes,
                zero=zero,
                alignment=alignment,
                shards=shards,
                idle_timeout=idle_timeout,
                track=track,
            )
            given = dict(zip(sizes, caps, strict=True))
        else:
            self.pool = BlockPool(
                max_block=max_block,
                max_idle_bytes=max_idle_bytes,
                zero=zero,
                alignment=alignment,
                shards=shards,
                idle_timeout=idle_timeout,
                track=track,
            )
            sizes = tuple(self.pool.classes)
            assert sizes[-1] == max_block
            given = {}
        self.sizes = sizes
        self.caps = {
            s: given[s] if given.get(s) is not None else min(max(budget // s // 4, 2), 1024)
            for s in sizes
        }
        self.budget = budget
        self.zero = zero
        self.alignment = alignment
        self.exact = shards == 1  # a FIFO per class: the model knows every block
        self.idle: dict[int, list[Memory | None]] = {s: [] for s in sizes}
        self.rows = {s: BlockCounts() for s in sizes}
        self.outside = BlockCounts()
        self.used: set[int] = set()
        self.oversize = 0
        self.held: list[Held] = []  # the holder has not let go
        self.released: list[Held] = []  # let go; the memory is not back yet
        self.gone: deque[Block] = deque(maxlen=3)  # released, memory back
        self.closed = False
        self.next_pattern = 0
        self.other = BlockPool(classes=[64], shards=1)
        self.other_block = self.other.get(10)

    def teardown(self):
        if not hasattr(self, "pool"):
            return
        for h in self.held + self.released:
            release_views(h.views)
            h.raw.clear()
            if h.block is not None and not h.block.released:
                h.block.release()
        quiet_close(self.pool)
        self.other_block.release()

    # -- model helpers --

    def bytes_idle(self) -> int:
        return sum(size * len(idle) for size, idle in self.idle.items())

    def live_memory(self) -> list[Memory]:
        out = [h.memory for h in self.held + self.released]
        out += [m for idle in self.idle.values() for m in idle]
        return [m for m in out if m is not None]

    def give_back(self, h: Held) -> None:
        """`BlockPool::put` of the block `h` holds."""
        capacity = h.capacity
        if capacity not in self.rows:
            # Oversize: freed; counted as dropped unless the pool is closed
            # (as a returned block of a class after close).
            self.outside.bump("puts", "destroyed", *(() if self.closed else ("dropped",)))
            return
        self.used.add(capacity)
        row = self.rows[capacity]
        row.bump("puts")
        if self.closed:
            row.bump("destroyed")
            return
        if self.zero == "release" and h.memory is not None:
            h.memory.content[:] = bytes(capacity)
        if self.zero == "poison" and h.memory is not None:
            h.memory.content[:] = bytes([POISON]) * capacity
        if (
            len(self.idle[capacity]) < self.caps[capacity]
            and self.bytes_idle() + capacity <= self.budget
        ):
            self.idle[capacity].append(h.memory)
        else:
            row.bump("dropped", "destroyed")

    def let_go(self, h: Held) -> None:
        """The holder released `h` (a release, a put or a `with` exit)."""
        assert h.block is not None
        assert h.block.released
        self.held.remove(h)
        if not h.exported:
            # No one ever had the address: the memory is back at once.
            self.give_back(h)
            self.gone.append(h.block)
            return
        if self.zero == "poison" and not h.views:
            h.poisoned = True
            if h.memory is not None:
                h.memory.content[:] = bytes([POISON]) * h.capacity
        self.released.append(h)

    def maybe_back(self, h: Held) -> None:
        """The memory of a released block comes back once nothing refers to
        its ``Block`` object."""
        if h in self.released and h.block is None and not h.views and not h.raw:
            self.released.remove(h)
            self.give_back(h)

    def pick(self, data, items: list):
        return items[data.draw(st.integers(0, len(items) - 1))]

    def take(self, n: int, start: int | None):
        """The model's side of a `get(n)`: the class row, and the memory."""
        fits = [s for s in self.sizes if s >= n]
        if not fits:
            self.oversize += 1
            self.outside.bump("misses", "created")
            return n, False, Memory(start, n) if self.exact else None
        size = fits[0]
        self.used.add(size)
        row = self.rows[size]
        if self.idle[size]:
            row.bump("hits")
            memory = self.idle[size].pop(0)  # None unless the model is exact
            if memory is not None:
                if memory.start is None:
                    memory.start = start  # handed out before without an address
                assert start is None or start == memory.start, "not the oldest idle block"
            return size, True, memory
        row.bump("misses", "created")
        return size, False, Memory(start, size) if self.exact else None

    # -- rules --

    @rule(n=st.integers(0, 1100), zeroed=st.booleans())
    def get(self, n, zeroed):
        value, exc = call(lambda: self.pool.get(n, zeroed=zeroed))
        if self.closed:
            assert isinstance(exc, PoolClosed), exc
            return
        assert exc is None, exc
        block = value
        start = address(block)
        assert start % self.alignment == 0
        size, reused, memory = self.take(n, start)
        assert block.capacity == size
        assert len(block) == n
        assert not block.released
        if memory is not None:
            others = [m.start for m in self.live_memory() if m is not memory]
            assert start not in others, "memory handed out twice"
            if self.zero == "acquire" or zeroed:
                memory.content[:n] = bytes(n)
            assert bytes(block) == bytes(memory.content[:n]), "holder sees unexpected bytes"
        elif zeroed or not reused or self.zero in ("release", "acquire"):
            assert bytes(block) == bytes(n), "holder sees a previous holder's bytes"
        elif self.zero == "poison":
            assert bytes(block) == bytes([POISON]) * n, "a reused block is not poisoned"
        self.next_pattern = self.next_pattern % 255 + 1
        view = memoryview(block)
        view[:] = bytes([self.next_pattern]) * n
        view.release()
        if memory is not None:
            memory.content[:n] = bytes([self.next_pattern]) * n
        h = Held(block, memory, self.next_pattern)
        h.exported = True
        self.held.append(h)

    @rule(n=st.integers(0, 1100), how=st.sampled_from(["release", "pool.put", "with"]))
    def get_and_let_go_unexported(self, n, how):
        """A block never exported comes back at its release, not later."""
        value, exc = call(lambda: self.pool.get(n))
        if self.closed:
            assert isinstance(exc, PoolClosed), exc
            return
        assert exc is None, exc
        block = value
        _, _, memory = self.take(n, None)
        if memory is not None and self.zero == "acquire":
            memory.content[:n] = bytes(n)
        assert len(block) == n
        h = Held(block, memory, 0)
        self.held.append(h)
        if how == "release":
            block.release()
        elif how == "pool.put":
            self.pool.put(block)
        else:
            assert block.__exit__(None, None, None) is False
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), how=st.sampled_from(["release", "pool.put"]))
    def release(self, data, how):
        h = self.pick(data, self.held)
        give = Block.release if how == "release" else self.pool.put
        if h.views:
            with pytest.raises(BufferError, match="view"):
                give(h.block)
            assert not h.block.released
            return
        give(h.block)
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def leave_with(self, data):
        h = self.pick(data, self.held)
        assert h.block.__exit__(None, None, None) is False
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), numpy=st.booleans())
    def export(self, data, numpy):
        h = self.pick(data, self.held)
        view = np.frombuffer(h.block, np.uint8) if numpy else memoryview(h.block)
        assert bytes(view) == h.expected()
        h.views.append(view)
        h.exported = True

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def raw_view(self, data):
        """What numpy's ``ndarray(buffer=...)`` does: take the address, end
        the export at once, keep a reference."""
        h = self.pick(data, self.held)
        raw = np.ndarray((h.length,), np.uint8, buffer=h.block)
        assert raw.base is h.block
        assert bytes(raw) == h.expected()
        h.raw.append(raw)
        h.exported = True

    @precondition(lambda self: any(h.views for h in self.held + self.released))
    @rule(data=st.data())
    def drop_view(self, data):
        h = self.pick(data, [h for h in self.held + self.released if h.views])
        assert bytes(h.views[-1]) == h.expected()
        release_views(h.views, 1)
        self.maybe_back(h)

    @precondition(lambda self: any(h.raw for h in self.held + self.released))
    @rule(data=st.data())
    def drop_raw(self, data):
        h = self.pick(data, [h for h in self.held + self.released if h.raw])
        assert bytes(h.raw.pop()) == h.expected()
        self.maybe_back(h)

    @precondition(lambda self: any(h.block is not None for h in self.released))
    @rule(data=st.data())
    def drop_block(self, data):
        """The model lets go of a released ``Block`` object."""
        h = self.pick(data, [h for h in self.released if h.block is not None])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h.block = None
        assert caught == [], "a released block is collected silently"
        self.maybe_back(h)

    @precondition(lambda self: any(not h.views and not h.raw for h in self.held))
    @rule(data=st.data())
    def abandon(self, data):
        """A block dropped without release goes back, with a ResourceWarning."""
        h = self.pick(data, [h for h in self.held if not h.views and not h.raw])
        self.held.remove(h)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h.block = None  # the last reference: collected at once
        assert [w.category for w in caught] == [ResourceWarning]
        assert f"{h.capacity} bytes" in str(caught[0].message)
        self.give_back(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def refusals_of_a_held_block(self, data):
        """Changes nothing: put into another pool."""
        h = self.pick(data, self.held)
        with pytest.raises(ValueError, match="another BlockPool"):
            self.other.put(h.block)
        with pytest.raises(ValueError, match="another BlockPool"):
            self.pool.put(self.other_block)
        assert not h.block.released

    def released_blocks(self) -> list:
        return [h.block for h in self.released if h.block is not None] + list(self.gone)

    @precondition(lambda self: self.released_blocks())
    @rule(
        data=st.data(), what=st.sampled_from(["release", "put", "len", "export", "enter", "exit"])
    )
    def use_after_release(self, data, what):
        """Refused (or, for leaving a with-block again, a no-op); changes nothing."""
        block = self.pick(data, self.released_blocks())
        assert block.released
        if what == "release":
            with pytest.raises(ValueError, match="released already"):
                block.release()
        elif what == "put":
            with pytest.raises(ValueError, match="released already"):
                self.pool.put(block)
        elif what == "len":
            with pytest.raises(ValueError, match="released"):
                len(block)
        elif what == "export":
            with pytest.raises(BufferError, match="released"):
                memoryview(block)
        elif what == "enter":
            with pytest.raises(ValueError, match="released"), block:
                pass
        else:
            assert block.__exit__(None, None, None) is False

    @rule(keep=st.integers(0, 3000))
    def trim(self, keep):
        freed = 0
        for size in reversed(self.sizes):
            idle = self.bytes_idle()
            if idle <= keep:
                break
            excess = -(-(idle - keep) // size)
            kept = max(0, len(self.idle[size]) - excess)
            gone = len(self.idle[size]) - kept
            freed += gone * size
            for _ in range(gone):
                self.rows[size].bump("destroyed")
            del self.idle[size][:gone]  # oldest first
        assert self.pool.trim(keep) == freed

    @rule()
    def clear(self):
        freed = self.bytes_idle()
        for size, idle in self.idle.items():
            for _ in idle:
                self.rows[size].bump("destroyed")
            idle.clear()
        assert self.pool.clear() == freed

    @rule()
    def close(self):
        close_and_check(self.pool, self.track, len(self.held))
        for size, idle in self.idle.items():
            for _ in idle:
                self.rows[size].bump("destroyed")
            idle.clear()
        self.closed = True

    @invariant()
    def stats_match_the_model(self):
        s = self.pool.stats()
        d = s.as_dict()
        for name in BlockCounts.NAMES:
            total = self.outside.c[name] + sum(r.c[name] for r in self.rows.values())
            assert getattr(s, name) == total == d[name], name
        assert s.oversize == self.oversize == d["oversize"]
        assert s.bytes_idle == self.bytes_idle() == d["bytes_idle"] <= self.budget
        out = self.held + self.released
        assert s.bytes_in_use == sum(h.capacity for h in out) == d["bytes_in_use"]
        assert s.max_idle_bytes == self.budget == self.pool.max_idle_bytes
        assert len(self.pool) == sum(len(i) for i in self.idle.values())
        gets = s.hits + s.misses
        assert s.hit_rate == d["hit_rate"] == (s.hits / gets if gets else 0.0)
        assert [r.size for r in s.classes] == sorted(self.used)
        assert [r["size"] for r in d["classes"]] == sorted(self.used)
        for r, rd in zip(s.classes, d["classes"], strict=True):
            row = self.rows[r.size]
            for name in ("hits", "misses", "puts", "dropped", "expired"):
                assert getattr(r, name) == row.c[name] == rd[name], (r.size, name)
            assert r.in_use == row.in_use == rd["in_use"]
            assert r.idle == len(self.idle[r.size]) == rd["idle"]
            assert r.max_idle == self.caps[r.size] == rd["max_idle"]
        assert s.in_use == len(out) == d["in_use"]
        assert s.idle == len(self.pool) == d["idle"]
        assert s.created == s.destroyed + s.idle + s.in_use
        assert self.pool.closed == self.closed
        check_outstanding(self.pool, self.track, len(self.held))

    @invariant()
    def every_holder_sees_only_its_own_bytes(self):
        for h in self.held:
            assert bytes(h.block) == h.expected()
        for h in self.held + self.released:
            for view in h.views:
                assert bytes(view) == h.expected()
            for raw in h.raw:
                assert bytes(raw) == h.expected(), "a raw array reads reused memory"


def release_views(views: list, n: int | None = None) -> None:
    """Ends the last `n` (default: all) exports in `views`."""
    for _ in range(len(views) if n is None else n):
        view = views.pop()
        if isinstance(view, memoryview):
            view.release()
        del view


BlockPoolMachine.TestCase.settings = machine_settings(examples=200, steps=40)
test_block_pool_model = BlockPoolMachine.TestCase


# --- BufferPool --------------------------------------------------------------


class HeldBuffer:
    """A buffer out of the pool, and what keeps its bytes from the pool (see
    ``Held``). ``memory`` models the allocation the bytes are in: a write
    that outgrows an exported buffer moves them to a new one, and a raw
    array keeps reading the old one, which must stay alive."""

    def __init__(self, buf: Buffer) -> None:
        self.buf: Buffer | None = buf
        self.content = bytearray()
        self.memory = bytearray()
        self.views: list = []
        self.raw: list[tuple[np.ndarray, bytearray]] = []
        self.exported = False
        self.capacity = 0  # when released


DATA = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=4000, max_size=6000),
).flatmap(lambda b: st.sampled_from([b, bytearray(b), memoryview(b), np.frombuffer(b, np.uint8)]))


class BufferPoolMachine(RuleBasedStateMachine):
    """BufferPool: buffers that come back cleared with their capacity, kept
    up to max_idle and max_capacity, exports that freeze a buffer, raw
    arrays that keep the address without an export (so an exported buffer's
    bytes never move or go back while its object lives), abandoned buffers,
    close, and every refusal. (Fewer than 1000 returns: the calibration
    never kicks in here; it has its own tests in test_buffer_pool.py.)"""

    @initialize(
        max_idle=st.none() | st.integers(0, 3),
        max_capacity=st.sampled_from([None, 0, 100, 5000]),
        shards=st.integers(1, 2),
        idle_timeout=st.sampled_from([None, 3600.0]),
        track=st.booleans(),
    )
    def make_pool(self, max_idle, max_capacity, shards, idle_timeout, track):
        self.track = track
        self.pool = BufferPool(
            max_idle=max_idle,
            max_capacity=max_capacity,
            shards=shards,
            idle_timeout=idle_timeout,
            track=track,
        )
        self.cap = DEFAULT_MAX_IDLE if max_idle is None else max_idle
        self.max_capacity = 16 << 20 if max_capacity is None else max_capacity
        self.fifo = shards == 1
        self.idle: list[int | None] = []  # capacities of the idle buffers
        self.m = Counts()
        self.held: list[HeldBuffer] = []  # the holder has not let go
        self.released: list[HeldBuffer] = []  # let go; the bytes are not back yet
        self.gone: deque[Buffer] = deque(maxlen=3)  # released, bytes back
        self.closed = False
        self.other = BufferPool()
        self.other_buf = self.other.get()

    def teardown(self):
        if not hasattr(self, "pool"):
            return
        for h in self.held + self.released:
            release_views(h.views)
            h.raw.clear()
            if h.buf is not None and not h.buf.released:
                h.buf.release()
        quiet_close(self.pool)
        self.other_buf.release()

    def give_back(self, capacity: int) -> None:
        self.m.bump("puts")
        if self.closed:
            self.m.bump("destroyed")
        elif capacity <= self.max_capacity and len(self.idle) < self.cap:
            self.idle.append(capacity)
        else:
            self.m.bump("dropped")
            self.m.bump("destroyed")

    def let_go(self, h: HeldBuffer) -> None:
        """The holder released `h` (a release, a put or a `with` exit)."""
        assert h.buf is not None
        assert h.buf.released
        self.held.remove(h)
        if h.exported:
            self.released.append(h)
        else:
            self.give_back(h.capacity)
            self.gone.append(h.buf)

    def maybe_back(self, h: HeldBuffer) -> None:
        if h in self.released and h.buf is None and not h.views and not h.raw:
            self.released.remove(h)
            self.give_back(h.capacity)

    def pick(self, data, items: list):
        return items[data.draw(st.integers(0, len(items) - 1))]

    def check_contents(self, h: HeldBuffer) -> None:
        assert h.buf.getvalue() == bytes(h.content)
        assert len(h.buf) == len(h.content)
        assert h.buf.capacity >= len(h.content)
        assert not h.buf.released

    @rule()
    def get(self):
        value, exc = call(self.pool.get)
        if self.closed:
            assert isinstance(exc, PoolClosed), exc
            return
        assert exc is None, exc
        buf = value
        if self.idle:
            self.m.hit()
            if self.fifo:
                assert buf.capacity == self.idle.pop(0), "not the oldest idle buffer"
            elif buf.capacity in self.idle:
                self.idle.remove(buf.capacity)
            else:
                # Only after a trim whose choice the model could not see.
                self.idle.remove(None)
        else:
            self.m.miss()
            assert buf.capacity == min(self.pool.typical_capacity, self.max_capacity)
        h = HeldBuffer(buf)
        self.check_contents(h)  # empty: nothing of the last holder's left
        self.held.append(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), payload=DATA, how=st.sampled_from(["write", "extend", "+="]))
    def write(self, data, payload, how):
        h = self.pick(data, self.held)
        n = len(bytes(payload))
        if h.views:
            with pytest.raises(BufferError, match="view"):
                h.buf.write(payload)
            return
        capacity = h.buf.capacity
        if how == "write":
            assert h.buf.write(payload) == n
        elif how == "extend":
            assert h.buf.extend(payload) is None
        else:
            buf = h.buf
            buf += payload
            assert buf is h.buf
        if h.buf.capacity != capacity:
            # Moved to a new allocation; raw arrays keep the old one.
            h.memory = bytearray(h.content)
        h.memory[len(h.content) : len(h.content) + n] = bytes(payload)
        h.content += bytes(payload)
        self.check_contents(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def clear_buffer(self, data):
        h = self.pick(data, self.held)
        capacity = h.buf.capacity
        if h.views:
            with pytest.raises(BufferError):
                h.buf.clear()
            return
        h.buf.clear()
        h.content.clear()  # the allocation keeps its bytes
        assert h.buf.capacity == capacity
        self.check_contents(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def export(self, data):
        h = self.pick(data, self.held)
        view = memoryview(h.buf)
        assert view.readonly
        assert bytes(view) == bytes(h.content)
        h.views.append(view)
        h.exported = True
        with pytest.raises(BufferError):
            h.buf.write(h.buf)  # into itself: frozen while exported

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def raw_view(self, data):
        """``np.ndarray(buffer=buf)``: the address, and a reference to the
        buffer, but no export (so writes are allowed afterwards)."""
        h = self.pick(data, self.held)
        raw = np.ndarray((len(h.content),), np.uint8, buffer=h.buf)
        assert raw.base is h.buf
        assert not raw.flags.writeable
        assert bytes(raw) == bytes(h.content)
        h.raw.append((raw, h.memory))
        h.exported = True

    @precondition(lambda self: any(h.views for h in self.held + self.released))
    @rule(data=st.data())
    def drop_view(self, data):
        h = self.pick(data, [h for h in self.held + self.released if h.views])
        assert bytes(h.views[-1]) == bytes(h.content)
        release_views(h.views, 1)
        self.maybe_back(h)

    @precondition(lambda self: any(h.raw for h in self.held + self.released))
    @rule(data=st.data())
    def drop_raw(self, data):
        h = self.pick(data, [h for h in self.held + self.released if h.raw])
        raw, memory = h.raw.pop()
        assert bytes(raw) == bytes(memory[: len(raw)])
        del raw
        self.maybe_back(h)

    @precondition(lambda self: any(h.buf is not None for h in self.released))
    @rule(data=st.data())
    def drop_buffer(self, data):
        """The model lets go of a released ``Buffer`` object."""
        h = self.pick(data, [h for h in self.released if h.buf is not None])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h.buf = None
        assert caught == [], "a released buffer is collected silently"
        self.maybe_back(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), how=st.sampled_from(["release", "pool.put"]))
    def release(self, data, how):
        h = self.pick(data, self.held)
        capacity = h.buf.capacity
        give = Buffer.release if how == "release" else self.pool.put
        if h.views:
            with pytest.raises(BufferError, match="view"):
                give(h.buf)
            self.check_contents(h)
            return
        give(h.buf)
        h.capacity = capacity
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def leave_with(self, data):
        h = self.pick(data, self.held)
        h.capacity = h.buf.capacity
        assert h.buf.__exit__(None, None, None) is False
        self.let_go(h)

    @precondition(lambda self: any(not h.views and not h.raw for h in self.held))
    @rule(data=st.data())
    def abandon(self, data):
        h = self.pick(data, [h for h in self.held if not h.views and not h.raw])
        self.held.remove(h)
        capacity = h.buf.capacity
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h.buf = None
        assert [w.category for w in caught] == [ResourceWarning]
        assert f"holding {len(h.content)} bytes" in str(caught[0].message)
        self.give_back(capacity)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def refusals_of_a_held_buffer(self, data):
        h = self.pick(data, self.held)
        with pytest.raises(ValueError, match="another BufferPool"):
            self.other.put(h.buf)
        with pytest.raises(ValueError, match="another BufferPool"):
            self.pool.put(self.other_buf)
        with pytest.raises(TypeError, match="bytes-like"):
            h.buf.write("text")
        self.check_contents(h)

    def released_buffers(self) -> list:
        return [h.buf for h in self.released if h.buf is not None] + list(self.gone)

    @precondition(lambda self: self.released_buffers())
    @rule(
        data=st.data(),
        what=st.sampled_from(
            ["write", "getvalue", "len", "capacity", "clear", "release", "put", "export", "enter"]
        ),
    )
    def use_after_release(self, data, what):
        buf = self.pick(data, self.released_buffers())
        assert buf.released
        calls = {
            "write": (lambda: buf.write(b"x"), ValueError),
            "getvalue": (buf.getvalue, ValueError),
            "len": (lambda: len(buf), ValueError),
            "capacity": (lambda: buf.capacity, ValueError),
            "clear": (buf.clear, ValueError),
            "release": (buf.release, ValueError),
            "put": (lambda: self.pool.put(buf), ValueError),
            "export": (lambda: memoryview(buf), BufferError),
            "enter": (buf.__enter__, ValueError),
        }
        fn, error = calls[what]
        with pytest.raises(error, match="released"):
            fn()
        assert buf.__exit__(None, None, None) is False  # a no-op once released

    @rule(keep=st.integers(0, 3))
    def trim(self, keep):
        surplus = max(0, len(self.idle) - keep)
        assert self.pool.trim(keep) == surplus
        for _ in range(surplus):
            self.m.bump("destroyed")
        if self.fifo:
            del self.idle[:surplus]  # the oldest
        elif surplus:
            # With several shards the model cannot see which buffers a trim
            # kept: it keeps their number, and forgets their capacities.
            self.idle = [None] * (len(self.idle) - surplus)

    @rule()
    def clear(self):
        n = len(self.idle)
        assert self.pool.clear() == n
        for _ in range(n):
            self.m.bump("destroyed")
        self.idle = []

    @rule()
    def close(self):
        close_and_check(self.pool, self.track, len(self.held))
        for _ in self.idle:
            self.m.bump("destroyed")
        self.idle = []
        self.closed = True

    @invariant()
    def stats_match_the_model(self):
        s = self.pool.stats()
        self.m.sample()
        d = s.as_dict()
        for name in COUNTERS:
            assert getattr(s, name) == self.m[name] == d[name], name
        out = len(self.held) + len(self.released)
        assert s.in_use == self.m.in_use == out == d["in_use"]
        assert s.idle == len(self.idle) == len(self.pool) == d["idle"]
        assert s.max_in_use == self.m.peak == d["max_in_use"]
        assert s.created == s.destroyed + s.idle + s.in_use
        assert self.pool.closed == self.closed
        check_outstanding(self.pool, self.track, len(self.held))
        assert self.pool.typical_capacity == 4096
        assert self.pool.large_capacity is None
        for h in self.held:
            self.check_contents(h)
        for h in self.held + self.released:
            for view in h.views:
                assert bytes(view) == bytes(h.content)
            for raw, memory in h.raw:
                assert bytes(raw) == bytes(memory[: len(raw)]), "a raw array reads lost memory"


BufferPoolMachine.TestCase.settings = machine_settings(examples=200, steps=40)
test_buffer_pool_model = BufferPoolMachine.TestCase
