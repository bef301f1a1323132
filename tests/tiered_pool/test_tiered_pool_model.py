"""The TieredPool against its model (see tests/pool_models.py): every
tier's counters, after every step."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
)

from shardpool import (
    DEFAULT_MAX_IDLE,
    PoolClosed,
    TieredPool,
)

from helpers import OBJECT_COUNTERS
from pool_models import (
    FACTORY_FAILS,
    HOOK_OPTIONS,
    Boom,
    CoreModel,
    Counts,
    Events,
    HookedMachine,
    Item,
    Outcome,
    call,
    check,
    check_outstanding,
    close_and_check,
    machine_settings,
)

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
        for name in OBJECT_COUNTERS:
            assert getattr(s, name) == self.total(name) == d[name], name
        idle = sum(len(core.idle) for core in self.tiers.values())
        assert s.idle == idle == len(self.pool) == d["idle"]
        assert s.in_use == in_use == d["in_use"]
        assert s.max_in_use == self.peak == d["max_in_use"]
        assert sorted(tier_stats) == list(TIER_SIZES)
        for size, core in self.tiers.items():
            t = tier_stats[size]
            for name in OBJECT_COUNTERS:
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
