"""The ObjectPool against its model (see tests/pool_models.py): bounded or
not, checked or not, with every hook, after every step every counter."""

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
    ObjectPool,
    PoolClosed,
    PoolTimeout,
)

from helpers import OBJECT_COUNTERS
from pool_models import (
    FACTORY_FAILS,
    HOOK_OPTIONS,
    BodyError,
    CoreModel,
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


class ObjectPoolMachine(HookedMachine):
    """ObjectPool, bounded or not, checked or not, with every hook."""

    @initialize(
        max_size=st.none() | st.integers(1, 4),
        max_idle=st.none() | st.integers(0, 4),
        shards=st.integers(1, 3),
        checked=st.booleans(),
        prefill=st.integers(0, 2),
        discard_on=st.booleans(),
        lifetime=st.sampled_from([None, "tiny", "long"]),
        **HOOK_OPTIONS,
    )
    def make_pool(
        self,
        max_size,
        max_idle,
        shards,
        checked,
        prefill,
        discard_on,
        lifetime,
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
        self.callers = dict.fromkeys(("gets", "puts", "timeouts", "discards"), 0)
        # A borrow() block raising BodyError discards its object.
        self.discard_on = discard_on
        if max_size is None:
            cap = DEFAULT_MAX_IDLE if max_idle is None else max_idle
        else:
            cap = min(max_size, 65536) if max_idle is None else min(max_idle, max_size)
        prefill = min(prefill, cap)
        self.checked = checked or max_size is not None
        # max_lifetime (checked pools only): none, a nanosecond (every
        # object has outlived it when the pool next looks), or an hour
        # (never reached).
        max_lifetime = {None: None, "tiny": 1e-9, "long": 3600.0}[lifetime]
        if not self.checked:
            max_lifetime = None
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
            discard_on=(BodyError,) if discard_on else (),
            max_lifetime=max_lifetime,
        )
        self.core = CoreModel(self, cap, fifo=shards == 1, max_size=max_size)
        self.core.outlives = max_lifetime == 1e-9
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

    def model_discard(self, ev: Events, obj: Item) -> Outcome:
        self.give(obj)
        return self.core.discard(ev, obj)

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
        self.put_and_check(data.draw(st.sampled_from(self.held)))

    def put_and_check(self, obj: Item) -> None:
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
        discards = self.discard_on and body_raises
        entered, exc = self.borrow_and_check(
            lambda: self.pool.borrow(timeout=timeout),
            body_raises,
            self.model_get,
            self.model_discard if discards else self.model_put,
        )
        if entered:
            self.callers["gets"] += 1
            self.callers["discards" if discards else "puts"] += 1
        elif isinstance(exc, PoolTimeout):
            self.callers["timeouts"] += 1

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def discard(self, data):
        obj = data.draw(st.sampled_from(self.held))
        _, exc = call(lambda: self.pool.discard(obj))
        self.callers["discards"] += 1
        ev = Events(self.log)
        outcome = self.model_discard(ev, obj)
        ev.done()
        check(outcome, exc)

    @precondition(lambda self: self.checked)
    @rule(data=st.data())
    def discard_not_out_is_refused(self, data):
        out = [r for r in self.returned if all(r is not h for h in self.held)]
        obj = data.draw(st.sampled_from([*out, Item(self.log)]))
        with pytest.raises(ValueError, match="not handed out"):
            self.pool.discard(obj)
        Events(self.log).done()

    @precondition(lambda self: not self.checked)
    @rule()
    def discard_foreign_into_unchecked_pool(self):
        """An unchecked pool destroys what it is given (documented)."""
        obj = Item(self.log)
        self.pool.discard(obj)
        self.callers["discards"] += 1
        self.foreign += 1
        ev = Events(self.log)
        self.core.discard(ev, obj)
        ev.done()

    @rule(patient=st.booleans())
    def discard_inside_borrow(self, patient):
        """The block discards its object: the exit does nothing more."""
        timeout = self.timeout(patient)
        got: list = []

        def run() -> None:
            with self.pool.borrow(timeout=timeout) as obj:
                got.append((obj, (obj.dead, list(obj.data))))
                self.pool.discard(obj)

        _, exc = call(run)
        ev = Events(self.log)
        outcome = self.model_get(ev)
        if outcome.error is None:
            obj = outcome.value
            assert got[0][0] is obj
            self.take_out(obj, seen=got[0][1])
            outcome = self.model_discard(ev, obj)
            self.callers["gets"] += 1
            self.callers["discards"] += 1
        elif isinstance(exc, PoolTimeout):
            self.callers["timeouts"] += 1
        ev.done()
        check(outcome, exc)

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
        self.put_and_check(obj)

    @precondition(lambda self: self.core.max_size is not None)
    @rule(max_size=st.integers(0, 5))
    def resize(self, max_size):
        """A new max_size: 0 is refused, changing nothing; a smaller one
        destroys idle surplus now and returned surplus later."""
        _, exc = call(lambda: self.pool.resize(max_size=max_size))
        ev = Events(self.log)
        if self.core.closed:
            assert isinstance(exc, ValueError), exc
            assert "closed" in str(exc)
        elif max_size == 0:
            assert isinstance(exc, ValueError), exc
            assert "max_size" in str(exc)
        else:
            assert exc is None, exc
            self.core.resize(ev, max_size)
        ev.done()
        assert self.pool.max_size == self.core.max_size

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
        for name in OBJECT_COUNTERS:
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
        assert s.discarded == self.callers["discards"] == m["discarded"] == d["discarded"]
        assert s.cancelled == 0 == d["cancelled"]
        assert self.pool.closed == self.core.closed
        # Nothing lost, nothing made up: every object made (or taken in) is
        # held, idle or destroyed.
        assert s.created + self.foreign == s.destroyed + s.idle + len(self.held)
        if not self.foreign:
            assert s.in_use == len(self.held)
            assert s.created == s.destroyed + s.idle + s.in_use
        if self.core.max_size is not None:
            # At most max_size exist, except after a resize shrank it below
            # what was out: then idle objects are shed first, and none kept.
            assert self.core.alive(len(self.held)) <= self.core.max_size or s.idle == 0
        assert s.idle <= self.pool.max_idle
        check_outstanding(self.pool, self.track, len(self.held))
        self.check_objects(self.core.idle.items)


ObjectPoolMachine.TestCase.settings = machine_settings(examples=300, steps=40)
test_object_pool_model = ObjectPoolMachine.TestCase
