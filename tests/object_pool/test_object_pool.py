"""Behaviour of ObjectPool on the success paths (errors: test_object_pool_errors.py,
threads and blocking: test_object_pool_threads.py)."""

from __future__ import annotations

import time
import types

import pytest

import shardpool
from shardpool import (
    DEFAULT_MAX_IDLE,
    ObjectPool,
    PoolClosed,
    PoolStats,
    PoolTimeout,
    Resetter,
)

from helpers import STAT_FIELDS, Recorder, Thing, balanced


class Resettable:
    """Follows the Resetter protocol and counts its resets."""

    def __init__(self) -> None:
        self.data: list = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        self.data.clear()


# --- package surface ---


def test_package_exports_the_public_names():
    for name in ("ObjectPool", "Resetter", "PoolStats", "PoolTimeout", "PoolClosed"):
        assert name in shardpool.__all__
        assert hasattr(shardpool, name)
    assert DEFAULT_MAX_IDLE == 1024
    assert issubclass(PoolTimeout, TimeoutError)


def test_help_documents_the_pool_and_its_arguments(capsys):
    help(shardpool.ObjectPool)
    text = capsys.readouterr().out
    assert "class ObjectPool" in text
    for word in (
        "factory",
        "max_idle",
        "max_size",
        "reset_on",
        "validate",
        "destroy",
        "idle_timeout",
        "prefill",
        "PoolTimeout",
        "borrow",
        "get_many",
        "put_many",
        "trim",
    ):
        assert word in text, word
    for method in ("get", "put", "borrow", "get_many", "put_many", "stats", "trim", "clear"):
        doc = getattr(ObjectPool, method).__doc__
        assert doc, method
        assert len(doc.strip()) > 20, method


def test_class_subscription_gives_a_generic_alias():
    alias = ObjectPool[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is ObjectPool
    assert alias.__args__ == (int,)


def test_resetter_is_a_runtime_checkable_protocol():
    assert isinstance(Resettable(), Resetter)
    assert not isinstance(Thing(), Resetter)
    assert not isinstance(object(), Resetter)


# --- get / put / len ---


def test_get_on_an_empty_pool_calls_the_factory():
    made = []

    def factory():
        obj = Thing()
        made.append(obj)
        return obj

    pool = ObjectPool(factory)
    a = pool.get()
    b = pool.get()
    assert made == [a, b]
    assert a is not b
    s = pool.stats()
    assert (s.created, s.misses, s.hits, s.in_use, s.idle) == (2, 2, 0, 2, 0)


def test_put_then_get_reuses_the_same_object():
    pool = ObjectPool(Thing)
    a = pool.get()
    pool.put(a)
    assert len(pool) == 1
    assert pool.get() is a
    assert len(pool) == 0
    s = pool.stats()
    assert (s.created, s.misses, s.hits, s.puts, s.in_use) == (1, 1, 1, 1, 1)


def test_len_counts_idle_objects_only():
    pool = ObjectPool(Thing)
    objs = [pool.get() for _ in range(5)]
    assert len(pool) == 0
    for i, obj in enumerate(objs, start=1):
        pool.put(obj)
        assert len(pool) == i
    assert pool.stats().idle == 5


def test_unchecked_unbounded_pool_accepts_objects_it_did_not_make():
    pool = ObjectPool(Thing, checked=False)
    assert not pool.checked
    outsider = Thing()
    pool.put(outsider)
    assert len(pool) == 1
    assert pool.get() is outsider


# --- borrow ---


def test_borrow_gets_on_entry_and_puts_on_exit():
    pool = ObjectPool(Thing)
    with pool.borrow() as obj:
        assert isinstance(obj, Thing)
        assert pool.stats().in_use == 1
        assert len(pool) == 0
    assert len(pool) == 1
    assert pool.get() is obj
    s = pool.stats()
    assert (s.misses, s.hits, s.puts) == (1, 1, 1)


def test_borrow_puts_back_when_the_body_raises():
    pool = ObjectPool(Resettable)
    seen = []

    def body():
        with pool.borrow() as obj:
            seen.append(obj)
            obj.data.append(1)
            raise KeyError("body")

    with pytest.raises(KeyError, match="body"):
        body()
    [obj] = seen
    assert len(pool) == 1
    assert obj.resets == 1
    assert obj.data == []
    s = pool.stats()
    assert (s.puts, s.in_use) == (1, 0)


def test_each_borrow_call_is_an_independent_context_manager():
    pool = ObjectPool(Thing)
    with pool.borrow() as a, pool.borrow() as b:
        assert a is not b
        assert pool.stats().in_use == 2
    assert len(pool) == 2


def test_a_borrow_object_can_be_used_again_after_exit():
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    with borrow as first:
        pass
    with borrow as second:
        assert second is first
    assert len(pool) == 1


def test_borrow_timeout_applies_to_the_get():
    pool = ObjectPool(Thing, max_size=1)
    held = pool.get()
    ran = []
    with pytest.raises(PoolTimeout), pool.borrow(timeout=0):
        ran.append(True)
    assert ran == []
    pool.put(held)
    with pool.borrow(timeout=0) as obj:
        assert obj is held


# --- get_many / put_many ---


def test_get_many_returns_n_distinct_objects_as_a_list():
    pool = ObjectPool(Thing, prefill=2)
    objs = pool.get_many(5)
    assert isinstance(objs, list)
    assert len(objs) == 5
    assert len({id(o) for o in objs}) == 5
    s = pool.stats()
    assert (s.hits, s.misses, s.in_use, s.idle) == (2, 3, 5, 0)


def test_get_many_zero_returns_an_empty_list_and_changes_nothing():
    pool = ObjectPool(Thing, max_size=1)
    before = pool.stats()
    assert pool.get_many(0) == []
    assert pool.stats() == before


def test_get_many_up_to_max_size_succeeds():
    pool = ObjectPool(Thing, max_size=3)
    objs = pool.get_many(3, timeout=0)
    assert len(objs) == 3
    assert pool.stats().in_use == 3


def test_put_many_returns_every_object():
    pool = ObjectPool(Resettable)
    objs = pool.get_many(4)
    for obj in objs:
        obj.data.append("dirty")
    pool.put_many(objs)
    assert len(pool) == 4
    assert all(o.resets == 1 and o.data == [] for o in objs)
    s = pool.stats()
    assert (s.puts, s.in_use, s.idle) == (4, 0, 4)


def test_put_many_accepts_any_iterable():
    pool = ObjectPool(Thing, checked=True)
    objs = pool.get_many(3)
    pool.put_many(o for o in objs)
    assert len(pool) == 3
    pool.put_many([])
    assert len(pool) == 3


# --- stats ---


def test_stats_is_an_immutable_snapshot():
    pool = ObjectPool(Thing)
    s = pool.stats()
    assert isinstance(s, PoolStats)
    for field in STAT_FIELDS:
        assert getattr(s, field) == 0
        with pytest.raises(AttributeError):
            setattr(s, field, 5)
    with pytest.raises(AttributeError):
        s.hit_rate = 1.0  # type: ignore[misc]
    pool.put(pool.get())
    assert s.created == 0  # The earlier snapshot did not change.
    assert pool.stats().created == 1


def test_stats_as_dict_has_every_field_and_hit_rate():
    pool = ObjectPool(Thing)
    pool.put(pool.get())
    pool.put(pool.get())
    pool.put(pool.get())
    s = pool.stats()
    d = s.as_dict()
    assert isinstance(d, dict)
    assert set(d) == {*STAT_FIELDS, "hit_rate"}
    for field in STAT_FIELDS:
        assert d[field] == getattr(s, field)
    assert d["hit_rate"] == s.hit_rate


def test_hit_rate_is_hits_over_gets():
    pool = ObjectPool(Thing)
    assert pool.stats().hit_rate == 0.0
    pool.put(pool.get())  # miss
    for _ in range(3):
        pool.put(pool.get())  # hits
    s = pool.stats()
    assert (s.hits, s.misses) == (3, 1)
    assert s.hit_rate == pytest.approx(0.75)


def test_stats_snapshots_compare_by_value():
    pool = ObjectPool(Thing)
    assert pool.stats() == pool.stats()
    a = pool.stats()
    pool.get()
    assert pool.stats() != a


def test_max_in_use_remembers_the_high_water_mark():
    pool = ObjectPool(Thing)
    objs = pool.get_many(3)
    pool.put_many(objs)
    s = pool.stats()
    assert s.in_use == 0
    assert s.max_in_use == 3


def test_created_equals_destroyed_plus_idle_plus_in_use():
    destroy = Recorder()
    pool = ObjectPool(Thing, max_idle=2, destroy=destroy)
    objs = pool.get_many(5)
    pool.put_many(objs[:4])  # two kept, two dropped
    extra = pool.get()
    pool.trim(keep=0)
    s = pool.stats()
    assert (s.created, s.destroyed, s.idle, s.in_use) == (5, 3, 0, 2)
    assert balanced(pool)
    assert len(destroy.calls) == 3
    pool.put(extra)
    pool.put(objs[4])
    assert balanced(pool)


# --- max_idle ---


def test_max_idle_defaults():
    assert ObjectPool(Thing).max_idle == DEFAULT_MAX_IDLE
    assert ObjectPool(Thing, max_size=7).max_idle == 7
    assert ObjectPool(Thing, max_size=7, max_idle=3).max_idle == 3
    # Never more idle objects than may exist at all.
    assert ObjectPool(Thing, max_size=7, max_idle=50).max_idle == 7
    assert ObjectPool(Thing, max_idle=5000).max_idle == 5000


def test_default_max_idle_is_enforced():
    destroy = Recorder()
    pool = ObjectPool(object, destroy=destroy)
    objs = pool.get_many(DEFAULT_MAX_IDLE + 3)
    pool.put_many(objs)
    assert len(pool) == DEFAULT_MAX_IDLE
    s = pool.stats()
    assert (s.dropped, s.destroyed) == (3, 3)
    assert len(destroy.calls) == 3


@pytest.mark.parametrize("shards", [1, 2, 3, 8])
def test_put_beyond_max_idle_destroys_and_counts_dropped(shards):
    destroy = Recorder()
    pool = ObjectPool(Thing, max_idle=3, shards=shards, destroy=destroy)
    objs = [pool.get() for _ in range(5)]
    for obj in objs:
        pool.put(obj)
    assert len(pool) == 3
    s = pool.stats()
    assert (s.puts, s.dropped, s.destroyed, s.idle) == (5, 2, 2, 3)
    assert destroy.calls == objs[3:]


def test_max_idle_zero_keeps_nothing():
    destroy = Recorder()
    pool = ObjectPool(Thing, max_idle=0, destroy=destroy)
    obj = pool.get()
    pool.put(obj)
    assert len(pool) == 0
    assert destroy.calls == [obj]
    assert pool.get() is not obj
    assert pool.stats().dropped == 1


def test_dropping_frees_capacity_in_a_bounded_pool():
    pool = ObjectPool(Thing, max_size=2, max_idle=1)
    a, b = pool.get_many(2)
    pool.put(a)
    pool.put(b)  # dropped: destroyed, so it no longer counts towards max_size
    assert pool.stats().dropped == 1
    c, d = pool.get_many(2, timeout=0)
    assert c is a
    assert d is not b


# --- max_size ---


def test_bounded_pool_is_always_checked_and_reports_max_size():
    pool = ObjectPool(Thing, max_size=4)
    assert pool.max_size == 4
    assert pool.checked
    assert ObjectPool(Thing).max_size is None


def test_full_bounded_pool_fails_at_once_with_timeout_zero():
    pool = ObjectPool(Thing, max_size=2)
    a, b = pool.get(), pool.get()
    start = time.monotonic()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    assert time.monotonic() - start < 1.0
    pool.put(b)
    assert pool.get(timeout=0) is b
    assert a is not b


def test_bounded_pool_reuses_instead_of_creating():
    pool = ObjectPool(Thing, max_size=1)
    for _ in range(10):
        with pool.borrow(timeout=0):
            pass
    s = pool.stats()
    assert (s.created, s.hits, s.misses) == (1, 9, 1)


def test_infinite_timeout_means_no_limit_on_an_available_object():
    pool = ObjectPool(Thing, max_size=1)
    obj = pool.get(timeout=float("inf"))
    pool.put(obj)
    assert pool.get(timeout=1e300) is obj


# --- reset ---


def test_resetter_objects_are_reset_on_put_by_default():
    pool = ObjectPool(Resettable)
    obj = pool.get()
    assert obj.resets == 0  # A new object is not reset.
    obj.data.append("dirty")
    pool.put(obj)
    assert obj.resets == 1
    assert obj.data == []
    assert pool.get() is obj
    assert obj.resets == 1  # Not reset again on get.
    assert pool.reset_on == "put"


def test_objects_without_reset_are_returned_as_they_are():
    pool = ObjectPool(Thing)
    obj = pool.get()
    obj.data.append("kept")
    pool.put(obj)
    assert pool.get().data == ["kept"]


def test_reset_attribute_that_is_not_callable_is_ignored():
    class NotReally:
        reset = None

    pool = ObjectPool(NotReally)
    pool.put(pool.get())
    assert len(pool) == 1
    assert pool.stats().reset_errors == 0


def test_automatic_reset_handles_several_classes():
    made = iter([Resettable(), Thing(), Resettable()])
    pool = ObjectPool(lambda: next(made))
    a, b, c = pool.get(), pool.get(), pool.get()
    b.data.append("kept")
    pool.put_many([b, a, c])
    assert (a.resets, c.resets) == (1, 1)
    assert b.data == ["kept"]


def test_reset_callable_overrides_the_reset_method():
    hook = Recorder()
    pool = ObjectPool(Resettable, reset=hook)
    obj = pool.get()
    pool.put(obj)
    assert hook.calls == [obj]
    assert obj.resets == 0


def test_reset_false_turns_resetting_off():
    pool = ObjectPool(Resettable, reset=False)
    obj = pool.get()
    obj.data.append("kept")
    pool.put(obj)
    assert obj.resets == 0
    assert pool.get().data == ["kept"]


def test_reset_none_is_the_default_automatic_reset():
    pool = ObjectPool(Resettable, reset=None)
    obj = pool.get()
    pool.put(obj)
    assert obj.resets == 1


def test_reset_on_get_resets_before_reuse_instead_of_on_put():
    events: list = []

    def reset(obj):
        events.append(("reset", obj))
        obj.data.clear()

    pool = ObjectPool(Thing, reset=reset, reset_on="get")
    assert pool.reset_on == "get"
    obj = pool.get()
    assert events == []  # A new object is not reset.
    obj.data.append("dirty")
    pool.put(obj)
    assert events == []  # Not on put.
    assert obj.data == ["dirty"]
    again = pool.get()
    assert again is obj
    assert events == [("reset", obj)]
    assert obj.data == []


def test_reset_on_get_with_resetter_objects():
    pool = ObjectPool(Resettable, reset_on="get")
    obj = pool.get()
    pool.put(obj)
    assert obj.resets == 0
    pool.get()
    assert obj.resets == 1


def test_reset_on_put_is_the_explicit_default():
    pool = ObjectPool(Resettable, reset_on="put")
    obj = pool.get()
    pool.put(obj)
    assert obj.resets == 1


def test_get_many_rollback_does_not_reset_unused_objects():
    failing = False

    def factory() -> Resettable:
        if failing:
            raise RuntimeError("no more")
        return Resettable()

    pool = ObjectPool(factory, max_size=3)
    idle = pool.get()
    pool.put(idle)
    assert idle.resets == 1
    failing = True
    with pytest.raises(RuntimeError, match="no more"):
        pool.get_many(2)  # takes the idle one; the factory fails for the second
    assert len(pool) == 1
    again = pool.get(timeout=0)
    assert again is idle
    assert again.resets == 1  # the rollback did not reset it
    s = pool.stats()
    assert (s.hits, s.misses, s.puts) == (1, 1, 1)  # the rollback is not counted


def test_get_many_that_cannot_have_all_at_once_takes_nothing():
    pool = ObjectPool(Resettable, max_size=2)
    held = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get_many(2, timeout=0)
    s = pool.stats()
    assert (len(pool), s.created, s.in_use, s.waits, s.timeouts) == (0, 1, 1, 1, 1)
    pool.put(held)


# --- validate ---


def test_validate_runs_on_idle_objects_before_they_are_handed_out():
    validate = Recorder(result=True)
    pool = ObjectPool(Thing, validate=validate)
    obj = pool.get()
    assert validate.calls == []  # Not for a new object.
    pool.put(obj)
    assert validate.calls == []  # Not on put.
    assert pool.get() is obj
    assert validate.calls == [obj]
    assert pool.stats().invalid == 0


def test_rejected_object_is_destroyed_and_the_next_one_tried():
    destroy = Recorder()
    pool = ObjectPool(Thing, validate=lambda o: not o.data, destroy=destroy, shards=1)
    bad, good = pool.get(), pool.get()
    bad.data.append("broken")
    pool.put(bad)
    pool.put(good)
    assert pool.get() is good
    assert destroy.calls == [bad]
    s = pool.stats()
    assert (s.invalid, s.destroyed, s.hits, s.idle) == (1, 1, 1, 0)
    assert balanced(pool)


@pytest.mark.parametrize("verdict", [None, [], 1, "yes", 0.0])
def test_a_validate_result_other_than_a_bool_is_a_type_error(verdict):
    # A psycopg-style check returns None on success: read as "reject", it
    # silently turned pooling off. Now it is a TypeError naming validate.
    destroy = Recorder()
    pool = ObjectPool(Thing, validate=lambda o: verdict, destroy=destroy, max_size=2)
    obj = pool.get()
    pool.put(obj)
    with pytest.raises(TypeError, match=r"validate must return True or False, got"):
        pool.get()
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.invalid, s.destroyed, s.idle, s.in_use) == (1, 1, 0, 0)
    assert balanced(pool)
    assert pool.get(timeout=0) is not obj  # its max_size slot was freed


def test_rejecting_everything_still_ends_with_a_new_object():
    validate = Recorder(result=False)
    destroy = Recorder()
    pool = ObjectPool(Thing, prefill=50, validate=validate, destroy=destroy)
    obj = pool.get()
    assert obj not in validate.calls
    assert len(validate.calls) == 50
    assert len(destroy.calls) == 50
    s = pool.stats()
    assert (s.invalid, s.created, s.misses, s.hits, s.idle) == (50, 51, 1, 0, 0)


def test_rejecting_everything_in_a_full_bounded_pool_makes_room():
    pool = ObjectPool(Thing, max_size=3, prefill=3, validate=lambda o: False)
    obj = pool.get(timeout=0)
    s = pool.stats()
    assert (s.invalid, s.created, s.in_use, s.idle) == (3, 4, 1, 0)
    assert obj is not None


# --- destroy ---


def test_destroy_runs_for_every_discarded_object(unraisable):
    destroy = Recorder()
    pool = ObjectPool(Thing, max_idle=2, destroy=destroy, shards=1)
    a, b, c = pool.get_many(3)
    pool.put_many([a, b, c])  # c dropped
    assert destroy.calls == [c]
    assert pool.trim(keep=1) == 1  # one trimmed
    assert len(destroy.calls) == 2
    assert pool.clear() == 1  # one cleared
    assert {id(o) for o in destroy.calls} == {id(a), id(b), id(c)}
    d, e = pool.get(), pool.get()
    pool.put(d)
    pool.close()  # d destroyed by close
    assert destroy.calls[-1] is d
    pool.put(e)  # e destroyed: closed pool
    assert destroy.calls[-1] is e
    assert pool.stats().destroyed == len(destroy.calls) == 5
    assert unraisable == []


def test_destroy_is_not_called_for_objects_that_are_kept():
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy)
    for _ in range(5):
        pool.put(pool.get())
    assert destroy.calls == []


# --- idle_timeout ---


def test_idle_object_within_idle_timeout_is_reused():
    pool = ObjectPool(Thing, idle_timeout=60)
    assert pool.idle_timeout == 60.0
    obj = pool.get()
    pool.put(obj)
    assert pool.get() is obj
    assert pool.stats().expired == 0


def test_object_idle_longer_than_idle_timeout_is_destroyed_on_get():
    destroy = Recorder()
    pool = ObjectPool(Thing, idle_timeout=0.05, destroy=destroy)
    old = pool.get()
    pool.put(old)
    time.sleep(0.15)
    new = pool.get()
    assert new is not old
    assert destroy.calls == [old]
    s = pool.stats()
    assert (s.expired, s.destroyed, s.created, s.hits, s.misses) == (1, 1, 2, 0, 2)
    assert balanced(pool)


def test_trim_destroys_expired_objects_even_when_keep_allows_them():
    destroy = Recorder()
    pool = ObjectPool(Thing, idle_timeout=0.05, destroy=destroy)
    objs = pool.get_many(3)
    pool.put_many(objs)
    time.sleep(0.15)
    assert pool.trim(keep=10) == 3
    assert len(pool) == 0
    assert pool.stats().expired == 3
    assert len(destroy.calls) == 3


def test_trim_keeps_fresh_objects_and_drops_expired_ones():
    pool = ObjectPool(Thing, idle_timeout=0.2)
    old = pool.get()
    pool.put(old)
    time.sleep(0.4)
    fresh = pool.get()
    assert fresh is not old  # old expired on this get
    pool.put(fresh)
    assert pool.trim(keep=10) == 0
    assert pool.get() is fresh


def test_no_idle_timeout_by_default():
    assert ObjectPool(Thing).idle_timeout is None


# --- prefill ---


def test_prefill_creates_objects_up_front():
    made = []

    def factory():
        made.append(Thing())
        return made[-1]

    pool = ObjectPool(factory, prefill=4)
    assert len(made) == 4
    assert len(pool) == 4
    s = pool.stats()
    assert (s.created, s.misses, s.hits, s.idle, s.in_use) == (4, 0, 0, 4, 0)
    obj = pool.get()
    assert obj in made
    assert pool.stats().hits == 1


def test_prefill_up_to_max_size_fills_the_bounded_pool():
    pool = ObjectPool(Thing, max_size=3, prefill=3)
    objs = pool.get_many(3, timeout=0)
    assert pool.stats().created == 3
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    pool.put_many(objs)


def test_prefill_zero_creates_nothing():
    pool = ObjectPool(Thing, prefill=0)
    assert pool.stats().created == 0


# --- trim / clear ---


def test_trim_returns_how_many_it_destroyed():
    pool = ObjectPool(Thing, prefill=5)
    assert pool.trim(keep=5) == 0
    assert pool.trim(keep=7) == 0
    assert pool.trim(keep=2) == 3
    assert len(pool) == 2
    assert pool.trim() == 2
    assert len(pool) == 0
    assert pool.trim() == 0
    s = pool.stats()
    assert (s.destroyed, s.expired, s.dropped) == (5, 0, 0)


def test_trim_destroys_the_oldest_idle_objects_first():
    pool = ObjectPool(Thing, idle_timeout=60, shards=4)
    objs = pool.get_many(4)
    for obj in objs:
        pool.put(obj)
        time.sleep(0.002)
    assert pool.trim(keep=2) == 2
    assert {id(o) for o in pool.get_many(2)} == {id(objs[2]), id(objs[3])}


def test_trim_leaves_handed_out_objects_alone():
    pool = ObjectPool(Thing, prefill=2)
    held = pool.get()
    assert pool.trim() == 1
    assert pool.stats().in_use == 1
    pool.put(held)
    assert len(pool) == 1


def test_clear_destroys_every_idle_object():
    destroy = Recorder()
    pool = ObjectPool(Thing, prefill=3, destroy=destroy)
    held = pool.get()
    assert pool.clear() == 2
    assert len(pool) == 0
    assert len(destroy.calls) == 2
    assert held not in destroy.calls
    assert pool.clear() == 0
    pool.put(held)
    assert len(pool) == 1  # The pool keeps working after clear().


def test_trim_frees_capacity_in_a_bounded_pool():
    pool = ObjectPool(Thing, max_size=2, prefill=2)
    assert pool.trim() == 2
    objs = pool.get_many(2, timeout=0)
    assert pool.stats().created == 4
    pool.put_many(objs)


# --- close ---


def test_close_destroys_idle_objects_and_refuses_gets():
    destroy = Recorder()
    pool = ObjectPool(Thing, prefill=2, destroy=destroy)
    assert not pool.closed
    pool.close()
    assert pool.closed
    assert len(pool) == 0
    assert len(destroy.calls) == 2
    with pytest.raises(PoolClosed):
        pool.get()
    with pytest.raises(PoolClosed):
        pool.get_many(2)
    with pytest.raises(PoolClosed), pool.borrow():
        pass


def test_put_into_a_closed_pool_destroys_the_object():
    destroy = Recorder()
    pool = ObjectPool(Resettable, destroy=destroy)
    obj = pool.get()
    pool.close()
    pool.put(obj)
    assert destroy.calls == [obj]
    assert len(pool) == 0
    s = pool.stats()
    assert (s.puts, s.destroyed, s.in_use, s.idle) == (1, 1, 0, 0)
    assert balanced(pool)


def test_put_into_a_closed_bounded_pool_destroys_the_object():
    destroy = Recorder()
    pool = ObjectPool(Thing, max_size=2, destroy=destroy)
    a, b = pool.get_many(2)
    pool.close()
    pool.put_many([a, b])
    assert destroy.calls == [a, b]
    assert len(pool) == 0
    assert balanced(pool)


def test_borrow_exit_on_a_pool_closed_meanwhile_destroys_the_object():
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy)
    with pool.borrow() as obj:
        pool.close()
    assert destroy.calls == [obj]


def test_close_twice_does_nothing_more():
    destroy = Recorder()
    pool = ObjectPool(Thing, prefill=1, destroy=destroy)
    pool.close()
    pool.close()
    assert len(destroy.calls) == 1
    assert pool.stats().destroyed == 1


def test_pool_as_context_manager_closes_on_exit():
    destroy = Recorder()
    with ObjectPool(Thing, destroy=destroy) as pool:
        assert isinstance(pool, ObjectPool)
        assert not pool.closed
        pool.put(pool.get())
    assert pool.closed
    assert len(destroy.calls) == 1
    with pytest.raises(PoolClosed):
        pool.get()


def test_pool_context_manager_closes_and_propagates_on_exception():
    with pytest.raises(ZeroDivisionError), ObjectPool(Thing) as pool:
        raise ZeroDivisionError
    assert pool.closed


# --- properties and repr ---


def test_configuration_is_readable():
    pool = ObjectPool(
        Thing,
        max_idle=3,
        max_size=5,
        reset_on="get",
        idle_timeout=2.5,
        shards=3,
    )
    assert pool.factory is Thing
    assert pool.max_idle == 3
    assert pool.max_size == 5
    assert pool.reset_on == "get"
    assert pool.idle_timeout == 2.5
    assert pool.shards == 3
    assert pool.checked
    assert ObjectPool(Thing, checked=True).checked
    assert not ObjectPool(Thing, checked=False).checked
    assert ObjectPool(Thing).shards >= 1


def test_repr_describes_the_pool():
    pool = ObjectPool(Thing, max_size=4)
    pool.get()
    text = repr(pool)
    assert "ObjectPool" in text
    assert "in_use=1" in text
    assert "max_size=4" in text


def test_borrow_is_subscriptable_for_annotations():
    alias = shardpool.Borrow[int]
    assert alias.__origin__ is shardpool.Borrow
    assert alias.__args__ == (int,)
