"""ObjectPool keeps the Borrow of a block that exited and hands it out again
at the next borrow() (src/python/borrow.rs, SpareBorrows), but only when
nothing else holds or can reach it: a Borrow the user kept is never
recycled under them, and a spare cannot be reached at all: it is
untracked by the collector while its pool keeps it (not in
gc.get_objects(), nor in gc.get_referents() of the pool or its state; the
pool's hidden state object shows, on its behalf, what it holds). The tests
see the spares through that: the state shows once per spare the spare's
reference to the state (helpers.spare_count), and a Borrow in a block is
found by the object it holds (helpers.borrow_holding). borrow(), __enter__
and __exit__ are hand-written method-table entries that behave as PyO3's
did."""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import textwrap
import threading
import weakref

import pytest

from shardpool import Borrow, ObjectPool, PoolTimeout

from helpers import (
    Thing,
    assert_hand_written_method,
    borrow_holding,
    fork,
    is_borrow,
    listed_borrows,
    pool_state,
    refusal,
    run_script,
    spare_count,
)

GIL_BUILD = not sysconfig.get_config_var("Py_GIL_DISABLED")
reuse_only = pytest.mark.skipif(not GIL_BUILD, reason="Borrows are reused only with a GIL")


def spares(pool: ObjectPool[Thing]) -> int:
    """How many spare Borrows the pool keeps."""
    return spare_count(pool_state(pool))


@reuse_only
def test_the_borrow_of_an_exited_block_is_reused() -> None:
    pool = ObjectPool(Thing)
    with pool.borrow() as obj:
        first = borrow_holding(obj)
        assert spares(pool) == 0
    assert spares(pool) == 1  # kept by the pool (alive: no other can take its id)
    again = pool.borrow()
    assert id(again) == first
    assert spares(pool) == 0  # taken from the pool's slot
    assert gc.is_tracked(again)  # out of the slot, the collector sees it again
    with again as obj2:
        assert obj2 is obj
    assert pool.stats().created == 1


@reuse_only
def test_a_borrow_the_user_named_is_not_kept() -> None:
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    with borrow:
        pass
    # Kept, it could be handed to another block while the user enters it.
    assert spares(pool) == 0
    assert gc.is_tracked(borrow)


def test_a_loop_of_blocks_gets_an_object_each_time() -> None:
    pool = ObjectPool(Thing)
    seen = set()
    for _ in range(100):
        with pool.borrow() as obj:
            seen.add(id(obj))
            assert pool.stats().in_use == 1
    assert len(seen) == 1
    assert pool.stats().in_use == 0
    assert spares(pool) == 1  # one Borrow served them all


def test_a_borrow_the_user_keeps_is_never_recycled() -> None:
    pool = ObjectPool(Thing)
    kept = pool.borrow()
    with kept as first:
        pass
    # The pool may keep it as a spare, but the user holds it too: every
    # later borrow() is another object.
    others = [pool.borrow() for _ in range(3)]
    assert all(other is not kept for other in others)
    assert len({id(o) for o in others}) == 3
    with kept as obj:  # still the user's, and it still works
        assert obj is first
        with others[0] as inner:
            assert inner is not obj
    with kept:
        pass
    assert pool.stats().in_use == 0


def test_stored_borrows_keep_their_own_arguments() -> None:
    pool = ObjectPool(Thing, max_size=1)
    patient = pool.borrow(timeout=None)
    with patient:
        pass
    impatient = pool.borrow(timeout=0)
    assert impatient is not patient
    held = pool.get()
    with pytest.raises(PoolTimeout), impatient:
        pass
    pool.put(held)
    with patient as obj:
        assert obj is held


@reuse_only
def test_a_reused_borrow_takes_the_new_calls_timeout() -> None:
    pool = ObjectPool(Thing, max_size=1)
    with pool.borrow(timeout=None):
        pass
    held = pool.get()
    # The spare had timeout=None: reused, it must not wait for ever.
    with pytest.raises(PoolTimeout), pool.borrow(timeout=0):
        pass
    pool.put(held)
    with pool.borrow(timeout=0) as obj:
        assert obj is held


def test_a_borrow_supports_no_weak_reference() -> None:
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    with pytest.raises(TypeError):
        weakref.ref(borrow)


def test_the_collector_sees_the_object_a_block_holds() -> None:
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    with borrow as obj:
        assert obj in gc.get_referents(borrow)
    assert obj not in gc.get_referents(borrow)


def test_a_spare_cannot_be_found_through_the_collector() -> None:
    # Found, it would be the finder's while the pool hands it to a block.
    pool = ObjectPool(Thing)
    with pool.borrow() as obj:
        first = borrow_holding(obj)  # tracked while in a block
    assert spares(pool) == 1
    assert all(id(o) != first for o in gc.get_objects())
    assert not any(isinstance(r, Borrow) for r in gc.get_referents(pool))
    state = pool_state(pool)
    # Only the state itself is shown on the spare's behalf.
    assert not any(isinstance(r, Borrow) for r in gc.get_referents(state))
    assert [r for r in gc.get_referents(state) if r is state] == [state]
    del state
    held = pool.borrow()  # the spare, tracked again now that it is out
    assert gc.is_tracked(held)
    assert any(o is held for o in gc.get_objects())
    with held, pool.borrow() as other:
        assert borrow_holding(other) != id(held)
    assert pool.stats().in_use == 0


def test_a_pool_and_its_spare_borrow_are_collected() -> None:
    pool = ObjectPool(Thing)
    with pool.borrow():
        pass
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    assert alive() is None


def test_a_closed_pool_keeps_no_spare() -> None:
    pool = ObjectPool(Thing)
    with pool.borrow():
        pass
    assert spares(pool) == 1
    pool.close()
    assert spares(pool) == 0


def test_a_block_that_raises_still_ends_and_its_borrow_serves_again() -> None:
    pool = ObjectPool(Thing)
    with pytest.raises(KeyError), pool.borrow():
        raise KeyError("block")
    with pool.borrow() as obj:
        assert isinstance(obj, Thing)
    assert pool.stats().in_use == 0


def test_a_failing_reset_is_noted_on_the_blocks_exception_then_borrows_go_on() -> None:
    fail = [True]

    def reset(obj: Thing) -> None:
        if fail[0]:
            raise RuntimeError("reset")

    pool = ObjectPool(Thing, reset=reset)
    with pytest.raises(KeyError) as info, pool.borrow():
        raise KeyError("block")
    assert any("giving the borrowed object back raised" in n for n in info.value.__notes__)
    fail[0] = False
    for _ in range(3):
        with pool.borrow():
            pass
    assert pool.stats().in_use == 0


def test_an_exit_without_an_entry_is_refused_and_changes_nothing() -> None:
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    with pytest.raises(RuntimeError, match="exited without being entered"):
        borrow.__exit__(None, None, None)
    with borrow, pytest.raises(RuntimeError, match="already in use"):
        borrow.__enter__()
    assert pool.stats().in_use == 0


def test_borrows_nested_and_inside_a_reset_hook_are_each_their_own() -> None:
    inner_objects: list[Thing] = []

    def reset(obj: Thing) -> None:
        # A block run while the outer block gives its object back.
        if not inner_objects:
            with pool.borrow() as inner:
                inner_objects.append(inner)

    pool = ObjectPool(Thing, reset=reset)
    outer = pool.borrow()
    with outer as a:
        nested = pool.borrow()
        assert nested is not outer
        with nested as b:
            assert b is not a
    assert len(inner_objects) == 1
    assert inner_objects[0] is not a
    assert pool.stats().in_use == 0


def test_threads_borrowing_at_once_never_share_an_object() -> None:
    pool = ObjectPool(Thing)
    lock = threading.Lock()
    out: set[int] = set()
    errors: list[str] = []

    def work() -> None:
        for _ in range(2000):
            with pool.borrow() as obj:
                with lock:
                    if id(obj) in out:
                        errors.append("an object lent to two blocks")
                    out.add(id(obj))
                with lock:
                    out.discard(id(obj))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pool.stats().in_use == 0


# --- the hand-written entries look and refuse as PyO3's did ---


@pytest.mark.parametrize(
    ("cls", "name", "text", "shown", "doc"),
    [
        (
            ObjectPool,
            "borrow",
            "($self, timeout=...)",
            "(self, /, timeout=Ellipsis)",
            "A context manager that gets an object",
        ),
        (Borrow, "__enter__", "($self)", "(self, /)", "Gets an object from the pool"),
        (
            Borrow,
            "__exit__",
            "($self, _exc_type, exc, _tb)",
            "(self, /, _exc_type, exc, _tb)",
            "Puts the object back",
        ),
    ],
)
def test_the_entries_are_method_descriptors_with_their_signatures(
    cls: type, name: str, text: str, shown: str, doc: str
) -> None:
    assert_hand_written_method(cls, name, text, shown, doc)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, 2), {}, "ObjectPool.borrow() takes from 0 to 1 positional arguments but 2 were given"),
        ((), {"x": 1}, "ObjectPool.borrow() got an unexpected keyword argument 'x'"),
        ((1,), {"timeout": 2}, "ObjectPool.borrow() got multiple values for argument 'timeout'"),
        (("1",), {}, "timeout must be a number of seconds or None, got str"),
        ((), {"timeout": -1}, "timeout must be a non-negative number of seconds, got -1"),
    ],
)
def test_borrow_refuses_bad_arguments_at_the_call(args: tuple, kwargs: dict, message: str) -> None:
    pool = ObjectPool(Thing, prefill=1)
    assert message in refusal(pool, lambda: pool.borrow(*args, **kwargs))


def test_borrow_takes_its_timeout_by_keyword_too() -> None:
    pool = ObjectPool(Thing)
    for borrow in (pool.borrow(1.0), pool.borrow(timeout=1.0), pool.borrow(None)):
        with borrow as obj:
            assert isinstance(obj, Thing)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "Borrow.__exit__() missing 3 required positional arguments"),
        ((None, None), {}, "Borrow.__exit__() missing 1 required positional argument: '_tb'"),
        ((None,) * 4, {}, "Borrow.__exit__() takes 3 positional arguments but 4 were given"),
    ],
)
def test_exit_refuses_bad_arguments_as_before(args: tuple, kwargs: dict, message: str) -> None:
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    with borrow:
        with pytest.raises(TypeError) as info:
            borrow.__exit__(*args, **kwargs)
        assert message in str(info.value)
        assert pool.stats().in_use == 1
    assert pool.stats().in_use == 0


def test_enter_takes_no_arguments() -> None:
    borrow = ObjectPool(Thing).borrow()
    with pytest.raises(TypeError, match="takes no arguments"):
        borrow.__enter__(1)  # type: ignore[call-arg]


def test_exit_by_keyword() -> None:
    pool = ObjectPool(Thing)
    borrow = pool.borrow()
    borrow.__enter__()
    assert borrow.__exit__(_exc_type=None, exc=None, _tb=None) is False
    assert pool.stats().in_use == 0


# --- what a Borrow holds ---


class Node:
    def __init__(self) -> None:
        self.link: object = None


def test_a_borrow_dropped_inside_its_block_lets_go_of_the_object() -> None:
    pool = ObjectPool(Node, checked=False)  # the pool keeps no reference
    borrow = pool.borrow()
    obj = borrow.__enter__()
    alive = weakref.ref(obj)
    del borrow, obj
    assert alive() is None


def test_a_cycle_through_the_object_a_borrow_holds_is_collected() -> None:
    pool = ObjectPool(Node, checked=False)
    borrow = pool.borrow()
    obj = borrow.__enter__()
    obj.link = borrow  # the object refers to the Borrow that holds it
    alive = weakref.ref(obj)
    del borrow, obj
    gc.collect()
    assert alive() is None


def test_a_block_on_another_thread_makes_this_threads_entry_refused() -> None:
    pool = ObjectPool(Node)
    borrow = pool.borrow()
    errors: list[BaseException] = []
    with borrow:

        def enter() -> None:
            try:
                borrow.__enter__()
            except RuntimeError as e:
                errors.append(e)

        t = threading.Thread(target=enter)
        t.start()
        t.join()
    assert len(errors) == 1
    assert "already in use" in str(errors[0])
    assert pool.stats().in_use == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reuses_discards_and_ends_blocks_as_the_parent() -> None:
    pool = ObjectPool(Node)
    with pool.borrow():  # a spare Borrow, and this thread's lent list, before the fork
        pass
    open_block = pool.borrow()
    held = open_block.__enter__()  # a block open across the fork
    pid = fork()
    if pid == 0:  # pragma: no cover - the child's result is its exit code
        code = 1
        try:
            open_block.__exit__(None, None, None)  # its entry, inherited
            with pool.borrow() as obj:
                pool.discard(obj)  # the exit then gives nothing back
            with pool.borrow():
                pass
            stats = pool.stats()
            code = 0 if (stats.in_use, stats.discarded) == (0, 1) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's block is its own still.
    open_block.__exit__(None, None, None)
    assert (pool.stats().in_use, pool.stats().discarded) == (0, 0)
    with pool.borrow() as again:
        assert again is held


# --- a spare does not keep its pool alive ---


@pytest.mark.usefixtures("no_gc")
def test_a_pool_dropped_after_borrow_blocks_is_freed_at_once() -> None:
    pool = ObjectPool(Thing)
    for _ in range(3):
        with pool.borrow() as obj:
            pass
    assert spares(pool) == 1
    pool_alive, obj_alive = weakref.ref(pool), weakref.ref(obj)
    del pool, obj
    assert pool_alive() is None
    assert obj_alive() is None  # the idle object went with its pool


@pytest.mark.usefixtures("no_gc")
def test_a_pool_only_its_borrow_refers_to_works_and_is_freed_at_once() -> None:
    pools: list[weakref.ref[ObjectPool[Thing]]] = []
    objs: list[weakref.ref[Thing]] = []

    def borrow() -> Borrow[Thing]:
        pool = ObjectPool(Thing)
        pools.append(weakref.ref(pool))
        return pool.borrow()

    for _ in range(2):
        with borrow() as obj:
            objs.append(weakref.ref(obj))
            assert pools[-1]() is None  # the Borrow holds its state only
        del obj
        # The Borrow, the last holder of the state, went with the block:
        # the idle object with it.
        assert objs[-1]() is None


@pytest.mark.usefixtures("no_gc")
def test_a_borrow_the_user_keeps_keeps_its_pools_state() -> None:
    pool = ObjectPool(Thing)
    kept = pool.borrow()
    with kept as first:
        pass
    alive, first_alive = weakref.ref(pool), weakref.ref(first)
    del pool
    assert alive() is None  # the pool object: the Borrow holds its state
    with kept as obj:
        assert obj is first  # the idle object, in the state
    del kept, obj, first
    assert first_alive() is None


def test_borrow_blocks_leave_the_pools_reference_count_as_it_was() -> None:
    pool = ObjectPool(Thing)
    before = sys.getrefcount(pool)
    for _ in range(10):
        with pool.borrow():
            pass
    assert sys.getrefcount(pool) == before


@reuse_only
def test_a_spare_does_not_refer_to_its_pool_object() -> None:
    pool = ObjectPool(Thing)
    with pool.borrow() as obj:
        first = borrow_holding(obj)
    state = pool_state(pool)
    # The state shows what the spare holds: its state, not the pool object.
    assert pool not in gc.get_referents(state)
    spare = pool.borrow()
    assert id(spare) == first
    assert pool not in gc.get_referents(spare)
    assert state in gc.get_referents(spare)
    with spare:  # entered neither
        assert pool not in gc.get_referents(spare)


@reuse_only
@pytest.mark.usefixtures("no_gc")
def test_a_reused_borrow_kept_by_the_user_works_once_its_pool_object_is_gone() -> None:
    pool = ObjectPool(Thing)
    with pool.borrow() as obj:
        first = borrow_holding(obj)
    alive = weakref.ref(pool)
    kept = pool.borrow()  # the spare, out of its slot: the user's now
    assert id(kept) == first
    del pool
    assert alive() is None
    with kept as again:  # it holds its pool's state
        assert again is obj


class Timeout(float):
    """A timeout that can be watched (a float subclass takes weak references)."""


@pytest.mark.usefixtures("no_gc")
def test_a_spare_goes_with_its_pool_object() -> None:
    # A kept Borrow lets go of its block's arguments at once, and of its
    # state when the pool object goes (a Borrow takes no weak reference:
    # the state's count shows it).
    pool = ObjectPool(Thing)
    timeout = Timeout(5.0)
    with pool.borrow(timeout=timeout):
        pass
    watched = weakref.ref(timeout)
    del timeout
    assert spares(pool) == 1
    assert watched() is None  # a kept Borrow holds nothing but its state
    state = [pool_state(pool)]
    held = sys.getrefcount(state[0])
    alive = weakref.ref(pool)
    del pool
    assert alive() is None
    # The pool object's reference and the spare's went: the slots closed,
    # the spare freed. (Counted outside the assert, whose rewriting would
    # hold `state[0]` in a temporary of its own.)
    after = sys.getrefcount(state[0])
    assert after == held - 2


def test_the_next_block_on_the_same_thread_reuses_the_spare() -> None:
    pool = ObjectPool(Thing)
    with pool.borrow() as obj:
        first = borrow_holding(obj)
    assert spares(pool) == 1  # alive: no other Borrow can take its id
    with pool.borrow() as obj:
        assert borrow_holding(obj) == first
    assert pool.stats().created == 1


@pytest.mark.skipif(GIL_BUILD, reason="spares are per thread group only without a GIL")
def test_a_spare_made_on_another_thread_is_not_reused_here() -> None:
    # Only the thread that made a Borrow can find it unique: elsewhere it is
    # let go of (never reused while its maker might still hold it).
    pool = ObjectPool(Thing)
    made_there: list[int] = []

    def block() -> None:
        with pool.borrow() as obj:
            made_there.append(borrow_holding(obj))

    thread = threading.Thread(target=block)
    thread.start()
    thread.join()
    assert len(made_there) == 1
    with pool.borrow() as obj:
        assert borrow_holding(obj) not in made_there


def test_a_named_borrow_is_never_handed_to_another_block() -> None:
    # From CPython 3.14 `with kept:` reads the variable without counting
    # (LOAD_FAST_BORROW): its reference count at the exit is 1, as for an
    # unnamed Borrow's, so that count cannot tell them apart.
    pool = ObjectPool(Thing)
    kept = pool.borrow()
    with kept:
        pass
    with pool.borrow() as obj:
        assert borrow_holding(obj) != id(kept)
    with kept as again:
        assert again is obj


@pytest.mark.usefixtures("no_gc")
def test_blocks_leave_no_borrow_the_collector_lists() -> None:
    # The spare that serves a loop of blocks is out of gc.get_objects()
    # between them; a Borrow out of the slots (held, or in a block) is in it.
    gc.collect()  # other tests' garbage Borrows, if any, gone before counting
    pool = ObjectPool(Thing)
    before = listed_borrows()
    for _ in range(50):
        with pool.borrow():
            pass
    assert spares(pool) == 1
    assert listed_borrows() == before
    held = pool.borrow()
    assert listed_borrows() == before + 1
    del held
    with pool.borrow():
        assert listed_borrows() == before + 1
    assert listed_borrows() == before
    assert pool.stats().in_use == 0


def test_code_run_while_borrow_reuses_a_spare_cannot_reach_the_borrow_it_returns() -> None:
    # Reusing a spare replaces its arguments: the old ones' destructor (a
    # timeout's __del__) runs inside borrow(). The Borrow about to be handed
    # out must still be out of the collector's sight there, or that code
    # could take it, enter it, or hand it to another thread before its
    # caller has it (whose block is then refused as "already in use").
    seen: list[int] = []
    spare: list[int] = []

    class Finder(float):
        def __del__(self) -> None:
            seen.extend(id(o) for o in gc.get_objects() if spare and id(o) == spare[0])

    pool = ObjectPool(Thing)
    with pool.borrow(timeout=Finder(5.0)) as obj:
        spare.append(borrow_holding(obj))
    assert spares(pool) == 1  # alive: no other object can take its id
    with pool.borrow() as again:  # the spare, its Finder dropped
        assert borrow_holding(again) == spare[0]
    assert seen == []


# --- code run while a pool is freed finds none of its spares ---

# Python code runs while spares are in a pool's slots: a block's arguments
# are dropped when its Borrow is kept (their destructor runs once the
# Borrow is in its slot), the pool's idle objects are dropped when its
# state is freed, and, for a Python subclass, its `__dict__`'s values are
# cleared before the class's own drop.
# When spares were tracked by the collector, code there found them in
# gc.get_objects() and entered them on a pool whose count was 0 (garbage
# stats, then a hang, on 3.11). Spares are now untracked in their slots
# (and a spare leaving them is tracked again only to be freed): the code
# searches every way the collector offers and finds none, and the pool,
# its state and its objects are freed. Run in a subprocess with a timeout
# (a hang or a crash fails it).
FREED_WHILE_SEARCHED = textwrap.dedent(
    """
    import gc, sys, weakref
    from shardpool import Borrow, ObjectPool, TieredPool

    class Thing:
        # An idle object of the pool is dropped when the pool's state is.
        def __del__(self):
            if armed:
                search()

    made = []  # a weak reference to each object the pool made
    searches = []
    found = []
    armed = []

    def make(*size):
        obj = Thing()
        made.append(weakref.ref(obj))
        return obj

    def search():
        # The collector's list of objects, and what each pool state in it shows.
        searches.append(1)
        for obj in gc.get_objects():
            if isinstance(obj, Borrow):
                found.append("listed")
            elif type(obj).__name__ in ("_ObjectPoolState", "_TieredPoolState"):
                shown = gc.get_referents(obj)
                found.extend("shown by a state" for r in shown if isinstance(r, Borrow))

    class Searcher(float):
        # A timeout: dropped when its block's Borrow is kept, in its slot.
        def __del__(self):
            search()

    class Attribute:
        def __del__(self):
            search()

    class SubPool(ObjectPool):
        pass

    class SubTiered(TieredPool):
        pass

    def spare_drop():
        pool = ObjectPool(make)
        # Two spares: the inner block's first (its exit offers it first),
        # the outer block's second (its exit then drops the searcher).
        with pool.borrow(timeout=Searcher(5.0)):
            with pool.borrow():
                pass
        stats = pool.stats()
        armed.append(True)
        del pool
        return stats

    def subclass_dict(pool, args):
        with pool.borrow(*args):
            with pool.borrow(*args):
                pass
        pool.attribute = Attribute()
        stats = pool.stats()
        del pool
        return stats

    gc.disable()  # what is freed here is freed by its count
    scenario = sys.argv[1]
    if scenario == "spare_drop":
        stats = spare_drop()
    elif scenario == "object_pool_dict":
        stats = subclass_dict(SubPool(make), ())
    else:
        stats = subclass_dict(SubTiered(make, [8], size_of=lambda o: 8), (8,))
    alive = sum(ref() is not None for ref in made)
    print(len(searches), found, stats.in_use, stats.created, alive)
    """
)


@pytest.mark.parametrize("scenario", ["spare_drop", "object_pool_dict", "tiered_pool_dict"])
def test_code_run_while_a_pool_is_freed_finds_none_of_its_spares(scenario: str) -> None:
    done = run_script(FREED_WHILE_SEARCHED, scenario)
    assert done.returncode == 0, done.stderr
    searches, found, in_use, created, alive = done.stdout.strip().split(" ", 4)
    assert int(searches) >= 1, done.stdout  # the search ran
    assert found == "[]", done.stdout
    # The books balanced, and every object went with the pool and its state.
    assert (in_use, created, alive) == ("0", "2", "0"), done.stdout


@pytest.mark.usefixtures("no_gc")
def test_a_pools_finalizer_finds_none_of_its_spares_and_the_pool_is_freed_after_it() -> None:
    # A finalizer (`__del__`) of the pool runs while its spare is in its
    # slots and its count is raised again: it sees the spare only as the
    # state's count of it, reaches no Borrow, and the pool, its state and
    # its idle object are freed once it returns.
    seen: list[object] = []
    # Other tests' Borrows are not this one's (held, so that no id is reused).
    others: list[object] = [o for o in gc.get_objects() if isinstance(o, Borrow)]
    before = {id(o) for o in others}

    class Finalized(ObjectPool[Thing]):
        def __del__(self) -> None:
            state = pool_state(self)
            seen.append(("spares", spare_count(state)))
            seen.append(("in_use", self.stats().in_use))
            shown = [*gc.get_referents(self), *gc.get_referents(state)]
            listed = [o for o in gc.get_objects() if is_borrow(o) and id(o) not in before]
            seen.extend(r for r in shown + listed if is_borrow(r))

    pool = Finalized(Thing)
    with pool.borrow() as first:
        pass
    alive, first_alive = weakref.ref(pool), weakref.ref(first)
    del pool, first
    assert seen == [("spares", 1), ("in_use", 0)]
    assert alive() is None
    assert first_alive() is None  # the state went with its spare
