"""What the model-based (stateful) tests share: one hypothesis
``RuleBasedStateMachine`` per pool kind (``tests/<kind>/test_<kind>_model.py``)
runs random single-threaded sequences of operations against a plain-Python
model of the pool, and after every step checks every counter of ``stats()``
(and ``tier_stats()`` / the class rows), ``len()``, ``closed`` and the pool's
invariants against the model.

The models predict the counters exactly, including ``max_in_use``, which the
core samples at known points (an object created, a wait started, every 64th
reuse in a shard, and every ``stats()`` call). Hooks (factory, reset,
validate, destroy) log what they are called with, so the models also check
*which* object each hook saw: a pool that hands out a destroyed object, or
one object to two holders, or validates, resets or destroys the wrong
object, fails there.

Where objects are identified only by what the pool gives back (an idle pool
with ``shards=1`` is a FIFO queue), the models check the exact order; with
more shards they check membership.

Settings: ``derandomize=True`` and no example database, so CI runs the same
examples every time (a failure is reproducible from the log alone, and a
flaky CI run cannot come from here). Set ``SHARDPOOL_STATEFUL_EXPLORE=N`` to
run N random (not derandomized) examples per machine when hunting for bugs.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import deque

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from shardpool import PoolTimeout

from helpers import OBJECT_COUNTERS, Boom, shardpool_log

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


# The core samples in_use for max_in_use on every 64th reuse in a shard.
SAMPLE_EVERY = 64


class BodyError(Exception):
    """Raised inside a ``with`` block."""


class Counts:
    """The counters of one core pool (one shard set), with the core's rule
    for ``in_use`` (hits + misses - puts - discarded, never below zero) and
    its sampling of ``max_in_use``."""

    def __init__(self) -> None:
        self.c = dict.fromkeys((*OBJECT_COUNTERS, "discarded"), 0)
        self.peak = 0

    def __getitem__(self, name: str) -> int:
        return self.c[name]

    def bump(self, name: str, n: int = 1) -> None:
        self.c[name] += n

    @property
    def in_use(self) -> int:
        c = self.c
        return max(0, c["hits"] + c["misses"] - c["puts"] - c["discarded"])

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
        # max_lifetime so tiny that every object has outlived it by the time
        # the pool looks again (a nanosecond: a Python call takes
        # microseconds), so expiry is certain, not a matter of timing.
        self.outlives = False

    def destroyed(self, ev: Events, obj: Item) -> None:
        ev.expect("destroy", obj)
        self.m.bump("destroyed")
        self.owner.destroy_errors += obj.destroy_raises

    def store(self, ev: Events, obj: Item) -> None:
        """A clean object goes idle, or is dropped when max_idle are idle, or
        when a resize left more objects than max_size (`obj` counted)."""
        over = self.max_size is not None and self.alive(len(self.owner.held)) + 1 > self.max_size
        if len(self.idle) < self.cap and not over:
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
        if self.outlives:
            obj = pop(ev.expect("destroy"))
            self.expire(obj)
            return Outcome(REJECTED)
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
                # A validator that raises rejects the object, as False does
                # (and is logged).
                self.m.bump("invalid")
                self.owner.validate_errors += obj.validate_raises
                self.destroyed(ev, obj)
                return Outcome(REJECTED)
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

    def discard(self, ev: Events, obj: Item) -> Outcome:
        """`Pool::discard` of an object the ledger (if any) accepted:
        counted, destroyed without a reset, open or closed."""
        self.used = True
        self.m.bump("discarded")
        self.destroyed(ev, obj)
        return Outcome()

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

    def expire(self, obj: Item) -> None:
        """`obj` outlived max_lifetime: destroyed (its hook seen already)."""
        self.m.bump("expired")
        self.m.bump("destroyed")
        self.owner.destroy_errors += obj.destroy_raises

    def take_in(self, ev: Events, obj: Item, reset: bool) -> Outcome:
        """`Pool::take_in`: destroyed if closed, or if it outlived
        max_lifetime (not reset), else reset (when due on put) and stored."""
        o = self.owner
        if self.closed:
            self.destroyed(ev, obj)
            return Outcome()
        if self.outlives:
            ev.expect("destroy", obj)
            self.expire(obj)
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
        """Destroys the oldest idle objects beyond `keep` (all of them,
        counted as expired, when they outlive max_lifetime; idle_timeout is
        never reached here)."""
        if self.outlives and not self.closed:
            gone = [ev.expect("destroy") for _ in range(len(self.idle))]
            self.idle.take_oldest(gone)
            for obj in gone:
                self.expire(obj)
            return len(gone)
        surplus = max(0, len(self.idle) - keep)
        gone = [ev.expect("destroy") for _ in range(surplus)]
        self.idle.take_oldest(gone)
        for obj in gone:
            self.m.bump("destroyed")
            self.owner.destroy_errors += obj.destroy_raises
        return surplus

    def resize(self, ev: Events, max_size: int) -> None:
        """`Pool::resize` of a bounded pool: the idle objects beyond the new
        bound are destroyed now (counted as dropped); objects in use are
        dropped as they come back (see `store`)."""
        self.max_size = max_size
        while len(self.idle) and self.alive(len(self.owner.held)) > max_size:
            obj = self.idle.pop(ev.expect("destroy"))
            self.m.bump("dropped")
            self.m.bump("destroyed")
            self.owner.destroy_errors += obj.destroy_raises

    def close(self, ev: Events) -> None:
        self.closed = True  # first: close destroys, it does not expire
        self.trim(ev, 0)

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
        self.validate_errors = 0
        self.log_capture = shardpool_log()
        self.logged = self.log_capture.__enter__()
        # Which idle object a get takes is visible through a hook call only
        # if one runs on the idle object; otherwise the model needs a FIFO.
        visible = validate or (self.resetting and reset_on == "get")
        return shards if visible else 1

    def teardown(self):
        if hasattr(self, "pool"):
            quiet_close(self.pool)
            self.log_capture.__exit__(None, None, None)

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

    @precondition(lambda self: self.held)
    @rule(data=st.data(), flag=st.sampled_from(FLAGS))
    def spoil(self, data, flag):
        """Tells a hook to fail on this object later."""
        setattr(data.draw(st.sampled_from(self.held)), flag, True)

    def check_objects(self, idle: list) -> None:
        assert not any(o.dead for o in self.held + idle), "a destroyed object is in use"
        destroy_errors = self.logged.errors(logging.ERROR)
        assert len(destroy_errors) == self.destroy_errors
        assert all(isinstance(e, Boom) for e in destroy_errors)
        validate_errors = self.logged.errors(logging.WARNING)
        assert len(validate_errors) == self.validate_errors
        assert all(isinstance(e, Boom) for e in validate_errors)


HOOK_OPTIONS = {
    "track": st.booleans(),
    "reset": st.sampled_from(["auto", "callable", "off"]),
    "reset_on": st.sampled_from(["put", "get"]),
    "validate": st.booleans(),
    "idle_timeout": st.sampled_from([None, 3600.0]),
}
# Mostly working factories: a failing one changes nothing, so it is drawn rarely.
FACTORY_FAILS = st.integers(0, 4).map(lambda i: i == 0)


# --- blocks and buffers ---------------------------------------------------


def release_views(views: list, n: int | None = None) -> None:
    """Ends the last `n` (default: all) exports in `views`."""
    for _ in range(len(views) if n is None else n):
        view = views.pop()
        if isinstance(view, memoryview):
            view.release()
        del view


class LeaseMachine(RuleBasedStateMachine):
    """What the BlockPool and BufferPool machines share. A holder (``Held``)
    has ``obj`` (the ``Block`` or ``Buffer``, or None once the model let go
    of it), ``views`` (live exports) and ``raw`` (arrays that keep the
    address without an export) and ``expected()`` (what they read). ``held``:
    the holder has not let go; ``released``: let go, but the memory is not
    back yet; ``gone``: released, memory back. Subclasses set ``pool``,
    ``foreign`` (an object of another pool, held) and ``KIND``, and define
    ``maybe_back(h)``: the model's side of the memory coming back once
    nothing refers to it."""

    KIND = ""

    def teardown(self):
        if not hasattr(self, "pool"):
            return
        for h in self.held + self.released:
            release_views(h.views)
            h.raw.clear()
            if h.obj is not None and not h.obj.released:
                h.obj.release()
        quiet_close(self.pool)
        self.foreign.release()

    def pick(self, data, items: list):
        return items[data.draw(st.integers(0, len(items) - 1))]

    def released_objects(self) -> list:
        return [h.obj for h in self.released if h.obj is not None] + list(self.gone)

    @precondition(lambda self: any(h.views for h in self.held + self.released))
    @rule(data=st.data())
    def drop_view(self, data):
        h = self.pick(data, [h for h in self.held + self.released if h.views])
        assert bytes(h.views[-1]) == h.expected()
        release_views(h.views, 1)
        self.maybe_back(h)

    @precondition(lambda self: any(h.obj is not None for h in self.released))
    @rule(data=st.data())
    def drop_object(self, data):
        """The model lets go of a released ``Block`` or ``Buffer`` object."""
        h = self.pick(data, [h for h in self.released if h.obj is not None])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h.obj = None
        assert caught == [], f"a released {self.KIND} is collected silently"
        self.maybe_back(h)
