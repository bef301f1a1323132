"""Error paths of ObjectPool: each one raises the documented exception and leaves
the pool's stats() and len() as they were (or changed exactly as documented)."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from shardpool import ObjectPool, PoolClosed, PoolTimeout

from helpers import Boom, Recorder, Thing, snapshot


class FailingReset:
    """Follows the Resetter protocol; its reset always raises."""

    def reset(self) -> None:
        raise Boom("reset failed")


def used_pool(**kwargs) -> ObjectPool:
    """A pool with some history: objects out, objects idle, non-zero counters."""
    pool = ObjectPool(Thing, **kwargs)
    objs = pool.get_many(3)
    pool.put_many(objs[:2])
    pool.put(pool.get())
    return pool


# --- constructor arguments (bad values of each: tests/errors/test_bad_input.py) ---


@pytest.mark.parametrize("factory", [None, 5, "list", Thing()])
def test_factory_must_be_callable(factory):
    with pytest.raises(TypeError, match="factory"):
        ObjectPool(factory)


def test_factory_is_required_and_positional_only():
    with pytest.raises(TypeError):
        ObjectPool()
    with pytest.raises(TypeError):
        ObjectPool(factory=Thing)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        ObjectPool(Thing, 10)


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="max_items"):
        ObjectPool(Thing, max_items=3)


# --- method arguments (bad values of each: tests/errors/test_bad_input.py) ---


def test_get_many_more_than_max_size_raises_at_once_and_changes_nothing():
    pool = ObjectPool(Thing, max_size=3)
    held = pool.get()
    before = snapshot(pool)
    with pytest.raises(ValueError, match=r"\bn\b"):
        pool.get_many(4)
    assert snapshot(pool) == before
    pool.put(held)


def test_wrong_arguments_to_get_and_put_raise_type_error_and_change_nothing():
    pool = used_pool()
    before = snapshot(pool)
    with pytest.raises(TypeError):
        pool.put()
    with pytest.raises(TypeError):
        pool.put(obj=Thing())  # positional only
    with pytest.raises(TypeError):
        pool.get(1, 2)
    assert snapshot(pool) == before


# --- factory errors ---


class FlakyFactory:
    """Makes Things, but raises on the calls whose numbers are in `fail_on`."""

    def __init__(self, *fail_on: int) -> None:
        self.fail_on = set(fail_on)
        self.calls = 0

    def __call__(self) -> Thing:
        self.calls += 1
        if self.calls in self.fail_on:
            raise Boom(f"factory call {self.calls}")
        return Thing()


def test_factory_error_propagates_from_get_and_changes_nothing():
    factory = FlakyFactory(4)
    pool = ObjectPool(factory)
    objs = pool.get_many(3)
    pool.put(objs[0])
    pool.get()  # hit, so the next get needs the factory
    before = snapshot(pool)
    with pytest.raises(Boom, match="factory call 4"):
        pool.get()
    assert snapshot(pool) == before
    pool.get()  # The pool still works.
    assert pool.stats().created == 4


def test_factory_error_in_bounded_pool_keeps_capacity():
    factory = FlakyFactory(2, 3)
    pool = ObjectPool(factory, max_size=2)
    held = pool.get()
    before = snapshot(pool)
    for _ in range(2):
        with pytest.raises(Boom):
            pool.get(timeout=0)
        assert snapshot(pool) == before
    # The reserved slot was given back: the pool can still reach max_size.
    other = pool.get(timeout=0)
    assert other is not held
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    pool.put_many([held, other])


def test_factory_error_in_max_size_one_pool_does_not_leak_the_only_slot():
    pool = ObjectPool(FlakyFactory(1), max_size=1)
    before = snapshot(pool)
    with pytest.raises(Boom):
        pool.get(timeout=0)
    assert snapshot(pool) == before
    assert isinstance(pool.get(timeout=0), Thing)


def test_factory_error_from_borrow_skips_the_body_and_changes_nothing():
    pool = ObjectPool(FlakyFactory(1))
    before = snapshot(pool)
    ran = []
    with pytest.raises(Boom), pool.borrow():
        ran.append(True)
    assert ran == []
    assert snapshot(pool) == before


def test_factory_error_in_get_many_takes_nothing_out():
    factory = FlakyFactory(3)
    destroy = Recorder()
    pool = ObjectPool(factory, max_size=4, destroy=destroy)
    with pytest.raises(Boom):
        pool.get_many(3, timeout=0)
    s = pool.stats()
    # All or nothing: the objects made before the failure went back, idle.
    assert s.in_use == 0
    assert s.hits + s.misses == s.puts
    assert s.created == s.destroyed + s.idle
    assert len(pool) == s.idle == 2
    # And no capacity leaked: all max_size objects can still be had.
    objs = pool.get_many(4, timeout=0)
    assert len(objs) == 4


def test_factory_error_during_prefill_fails_construction_and_destroys_what_was_made():
    destroy = Recorder()
    factory = FlakyFactory(3)
    with pytest.raises(Boom):
        ObjectPool(factory, prefill=5, destroy=destroy)
    assert factory.calls == 3
    assert len(destroy.calls) == 2


def test_factory_returning_an_object_already_handed_out_is_refused():
    shared = Thing()
    pool = ObjectPool(lambda: shared, max_size=3)
    assert pool.get() is shared
    before = snapshot(pool)
    with pytest.raises(RuntimeError, match="factory"):
        pool.get(timeout=0)
    assert snapshot(pool) == before
    pool.put(shared)
    assert pool.get(timeout=0) is shared


# --- reset errors ---


@pytest.mark.parametrize("how", ["method", "hook"])
def test_reset_error_destroys_the_object_and_propagates_from_put(how):
    destroy = Recorder()
    if how == "method":
        pool = ObjectPool(FailingReset, destroy=destroy)
    else:
        pool = ObjectPool(Thing, reset=FailingReset.reset, destroy=destroy)
    other = pool.get()
    obj = pool.get()
    before, idle_before = pool.stats(), len(pool)
    with pytest.raises(Boom, match="reset failed"):
        pool.put(obj)
    assert destroy.calls == [obj]
    after = pool.stats()
    assert len(pool) == idle_before
    assert after.reset_errors == before.reset_errors + 1
    assert after.destroyed == before.destroyed + 1
    assert after.puts == before.puts + 1
    assert after.in_use == before.in_use - 1
    assert after.created == after.destroyed + after.idle + after.in_use
    # The destroyed object is never handed out again.
    assert pool.get() not in (obj, other)


def test_reset_error_frees_capacity_in_a_bounded_pool():
    pool = ObjectPool(FailingReset, max_size=1)
    obj = pool.get()
    with pytest.raises(Boom):
        pool.put(obj)
    fresh = pool.get(timeout=0)
    assert fresh is not obj
    assert pool.stats().created == 2


def test_reset_error_in_borrow_exit_is_attached_to_the_body_error(pool_log):
    # The body's exception propagates; the reset's is a note on it (and
    # logged with its traceback), not its replacement.
    destroy = Recorder()
    pool = ObjectPool(FailingReset, destroy=destroy)
    with pytest.raises(KeyError) as info, pool.borrow() as obj:
        raise KeyError("body")
    assert info.value.args == ("body",)
    assert "Boom" in info.value.__notes__[0]
    assert [type(e) for e in pool_log.errors(logging.WARNING)] == [Boom]
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.reset_errors, s.destroyed, s.in_use, s.idle) == (1, 1, 0, 0)


def test_reset_error_in_borrow_exit_without_body_error_propagates():
    pool = ObjectPool(FailingReset)
    with pytest.raises(Boom) as info, pool.borrow():
        pass
    assert info.value.__context__ is None
    s = pool.stats()
    assert (s.reset_errors, s.destroyed, s.in_use) == (1, 1, 0)


def test_reset_error_on_get_destroys_the_object_and_propagates_from_get():
    destroy = Recorder()
    pool = ObjectPool(FailingReset, reset_on="get", destroy=destroy)
    obj = pool.get()
    pool.put(obj)  # Not reset on put, so no error yet.
    assert pool.stats().reset_errors == 0
    with pytest.raises(Boom):
        pool.get()
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.reset_errors, s.destroyed, s.idle, s.in_use) == (1, 1, 0, 0)
    assert s.created == s.destroyed + s.idle + s.in_use


def test_put_many_with_failing_resets_keeps_the_others_and_raises_the_first_error():
    def reset(obj):
        if obj.data:
            raise Boom(obj.data[0])

    destroy = Recorder()
    pool = ObjectPool(Thing, reset=reset, destroy=destroy)
    objs = pool.get_many(4)
    objs[1].data.append("first")
    objs[3].data.append("second")
    with pytest.raises(Boom, match="first"):
        pool.put_many(objs)
    assert destroy.calls == [objs[1], objs[3]]
    assert len(pool) == 2
    s = pool.stats()
    assert (s.reset_errors, s.destroyed, s.puts, s.in_use, s.idle) == (2, 2, 4, 0, 2)


# --- validate and destroy errors ---


def test_validate_error_rejects_the_object_and_get_goes_on(pool_log):
    def validate(obj):
        raise Boom("validate failed")

    destroy = Recorder()
    pool = ObjectPool(Thing, validate=validate, destroy=destroy)
    obj = pool.get()
    pool.put(obj)
    fresh = pool.get()
    assert fresh is not obj
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.invalid, s.destroyed, s.idle, s.in_use, s.misses) == (1, 1, 0, 1, 2)
    [error] = pool_log.errors(logging.WARNING)
    assert isinstance(error, Boom)
    assert str(error) == "validate failed"


def test_destroy_error_is_logged_and_the_pool_carries_on(pool_log, unraisable):
    def destroy(obj):
        raise Boom("destroy failed")

    pool = ObjectPool(Thing, max_idle=1, destroy=destroy)
    a, b = pool.get(), pool.get()
    pool.put(a)
    pool.put(b)  # dropped: destroy raises, logged, not propagated
    [error] = pool_log.errors()
    assert type(error) is Boom
    assert str(error) == "destroy failed"
    s = pool.stats()
    assert (s.dropped, s.destroyed, s.idle) == (1, 1, 1)
    assert pool.clear() == 1
    pool.close()
    assert len(pool_log.errors()) == 2
    assert unraisable == []
    assert pool.stats().destroyed == 2


# --- refused returns ---

REFUSING_POOLS = [
    pytest.param({"max_size": 5}, id="bounded"),
    pytest.param({"checked": True}, id="checked"),
    pytest.param({"checked": True, "max_size": 5}, id="bounded-checked"),
]


@pytest.mark.parametrize("kwargs", REFUSING_POOLS)
def test_put_of_a_foreign_object_is_refused_and_changes_nothing(kwargs):
    reset = Recorder()
    pool = used_pool(reset=reset, **kwargs)
    resets = len(reset.calls)
    before = snapshot(pool)
    outsider = Thing()
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(outsider)
    assert snapshot(pool) == before
    assert len(reset.calls) == resets


@pytest.mark.parametrize("kwargs", REFUSING_POOLS)
def test_put_twice_is_refused_and_changes_nothing(kwargs):
    destroy = Recorder()
    pool = used_pool(destroy=destroy, **kwargs)
    obj = pool.get()
    pool.put(obj)
    before = snapshot(pool)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(obj)
    assert snapshot(pool) == before
    assert destroy.calls == []
    # The idle copy is handed out once only.
    out = pool.get_many(len(pool))
    assert len({id(o) for o in out}) == len(out)


@pytest.mark.parametrize("kwargs", REFUSING_POOLS)
def test_put_into_closed_pool_still_refuses_foreign_objects(kwargs):
    pool = used_pool(**kwargs)
    pool.close()
    before = snapshot(pool)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(Thing())
    assert snapshot(pool) == before


@pytest.mark.parametrize("kwargs", REFUSING_POOLS)
def test_put_many_with_a_foreign_object_is_refused_and_changes_nothing(kwargs):
    pool = used_pool(**kwargs)
    objs = pool.get_many(2)
    before = snapshot(pool)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put_many([objs[0], Thing(), objs[1]])
    assert snapshot(pool) == before
    pool.put_many(objs)  # Still out, so they can go back now.
    assert pool.stats().in_use == before[0]["in_use"] - 2


@pytest.mark.parametrize("kwargs", REFUSING_POOLS)
def test_put_many_with_a_repeated_object_is_refused_and_changes_nothing(kwargs):
    pool = used_pool(**kwargs)
    a, b = pool.get_many(2)
    before = snapshot(pool)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put_many([a, b, a])
    assert snapshot(pool) == before
    pool.put_many([a, b])


def test_put_of_a_borrowed_object_inside_the_block_makes_the_exit_fail():
    pool = ObjectPool(Thing, checked=True)
    with pytest.raises(ValueError, match="not handed out"), pool.borrow() as obj:
        pool.put(obj)
    s = pool.stats()
    assert (s.puts, s.in_use, s.idle) == (1, 0, 1)


# --- timeouts and closed pools ---


def test_timeout_changes_only_waits_and_timeouts():
    pool = ObjectPool(Thing, max_size=2)
    held = pool.get_many(2)
    before, idle = pool.stats(), len(pool)
    with pytest.raises(PoolTimeout) as info:
        pool.get(timeout=0)
    assert isinstance(info.value, TimeoutError)
    assert "max_size=2" in str(info.value)
    after = pool.stats()
    assert len(pool) == idle
    assert after.as_dict() == {
        **before.as_dict(),
        "waits": before.waits + 1,
        "timeouts": before.timeouts + 1,
    }
    pool.put_many(held)


def test_get_many_timeout_takes_nothing():
    pool = ObjectPool(Thing, max_size=3, prefill=1)
    held = pool.get_many(2)  # one hit, one new
    pool.put(held[0])
    before = pool.stats()
    with pytest.raises(PoolTimeout):
        pool.get_many(3, timeout=0.05)
    after = pool.stats()
    # Three were never free at once: it waited holding nothing, made
    # nothing, and counted only its wait (issue 11, defects 4 and 10).
    assert after.in_use == before.in_use
    assert (after.created, after.hits, after.misses, after.puts) == (
        before.created,
        before.hits,
        before.misses,
        before.puts,
    )
    assert after.idle == before.idle == len(pool) == 1
    assert (after.waits, after.timeouts) == (before.waits + 1, before.timeouts + 1)
    pool.put(held[1])


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda p: p.get(), id="get"),
        pytest.param(lambda p: p.get(timeout=0), id="get-timeout"),
        pytest.param(lambda p: p.get_many(2), id="get_many"),
        pytest.param(lambda p: p.borrow().__enter__(), id="borrow"),
    ],
)
@pytest.mark.parametrize("kwargs", [{}, {"max_size": 3}], ids=["unbounded", "bounded"])
def test_get_on_a_closed_pool_raises_pool_closed_and_changes_nothing(call, kwargs):
    pool = used_pool(**kwargs)
    pool.close()
    before = snapshot(pool)
    with pytest.raises(PoolClosed, match="closed"):
        call(pool)
    assert snapshot(pool) == before


def test_borrow_object_cannot_be_entered_twice_at_once():
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    with borrow:
        before = snapshot(pool)
        with pytest.raises(RuntimeError, match="borrow"):
            borrow.__enter__()
        assert snapshot(pool) == before
    assert len(pool) == 1


def test_borrow_exit_without_enter_raises_and_changes_nothing():
    pool = ObjectPool(Thing)
    before = snapshot(pool)
    with pytest.raises(RuntimeError, match="borrow"):
        pool.borrow().__exit__(None, None, None)
    assert snapshot(pool) == before


# --- pickling ---


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pool_cannot_be_pickled(protocol):
    pool = used_pool()
    before = snapshot(pool)
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(pool, protocol=protocol)
    assert snapshot(pool) == before


def test_pool_cannot_be_copied():
    pool = ObjectPool(Thing)
    with pytest.raises(TypeError):
        copy.copy(pool)
    with pytest.raises(TypeError):
        copy.deepcopy(pool)
