"""The collector and a pool's state (src/python/borrow.rs): an ObjectPool's
or a TieredPool's fields live in a hidden collector-tracked object
(_ObjectPoolState, _TieredPoolState) that the pool object and every Borrow
hold and show; a spare Borrow is untracked while its pool keeps it, and
the state shows what the spare holds on its behalf, so each reference to
the state is shown by exactly one holder. What that must give: a pool in
a garbage cycle is collected, spares and named Borrows in the cycle
included; a state some live Borrow holds is never collected (its block
works on); a Borrow outliving its pool object works, and its state goes
with it; no spare is ever reachable through the collector; and Python code
run during a collection (finalizers, weakref callbacks, hooks and blocks
that collect) that creates, takes and drops Borrows and spares crashes
nothing and leaves the books balanced. The crash-prone scripts run in a
subprocess with a timeout."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable

import pytest

from shardpool import Borrow, ObjectPool, PoolClosed, TieredPool

from helpers import (
    Thing,
    balanced,
    is_borrow,
    listed_borrows,
    pool_state,
    run_threads,
    spare_count,
    state_references,
)

KINDS = ["object", "tiered"]


class Node:
    """A pooled object that can be watched and linked into cycles."""

    def __init__(self) -> None:
        self.link: object = None


class Marker:
    """Something a hook's closure holds, whose death shows its state went."""


Pool = ObjectPool[Node] | TieredPool[Node]


def make_pool(
    kind: str, make: Callable[[], Node], reset: Callable[[Node], object] | None = None
) -> Pool:
    """An ObjectPool or a one-tier TieredPool whose objects `make` makes."""
    if kind == "object":
        return ObjectPool(make, reset=reset)
    return TieredPool(lambda n: make(), [8], size_of=lambda obj: 8, reset=reset)


def borrow(pool: Pool) -> Borrow[Node]:
    """``pool.borrow()`` (a size that fits the tier, for a TieredPool)."""
    if isinstance(pool, TieredPool):
        return pool.borrow(4)
    return pool.borrow()


def pool_in_a_cycle(kind: str) -> tuple[Pool, weakref.ref[Marker]]:
    """A pool whose factory refers to it (pool -> state -> factory -> cell
    -> pool), and a marker the factory's closure holds."""
    marker = Marker()
    cell: list[object] = [None, marker]

    def make() -> Node:
        assert cell[0] is not None
        return Node()

    pool = make_pool(kind, make)
    cell[0] = pool
    return pool, weakref.ref(marker)


# --- cycles through the state ---


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("no_gc")
def test_a_pool_in_a_cycle_with_its_factory_and_spares_is_collected(kind: str) -> None:
    pool, marker = pool_in_a_cycle(kind)
    with borrow(pool), borrow(pool):  # two objects made, two spares kept
        pass
    assert spare_count(pool_state(pool)) == 2
    alive = weakref.ref(pool)
    del pool
    assert alive() is not None  # the cycle holds it
    gc.collect()
    assert alive() is None
    assert marker() is None  # the state and its factory went too


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("no_gc")
def test_an_owner_holding_its_pool_and_a_named_borrow_is_collected(kind: str) -> None:
    # The usual shape: an object whose pool's factory is its own bound
    # method (owner -> pool -> state -> factory -> owner) keeps a Borrow
    # (owner -> Borrow -> state), and its pool keeps spares. (A Borrow that
    # held a state the pool object showed only while no Borrow held it,
    # tried in the seventh session, hid the state here: the cycle leaked.)
    class Owner:
        def __init__(self) -> None:
            self.pool = make_pool(kind, self.make)
            self.conn = borrow(self.pool)

        def make(self) -> Node:
            return Node()

    owner = Owner()
    with owner.conn:
        pass
    with borrow(owner.pool), borrow(owner.pool):
        pass
    assert spare_count(pool_state(owner.pool)) == 2
    alive = weakref.ref(owner)
    del owner
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("no_gc")
def test_a_borrow_outside_a_pools_cycle_keeps_its_state_and_works(kind: str) -> None:
    pool, marker = pool_in_a_cycle(kind)
    outside, second = borrow(pool), borrow(pool)
    with borrow(pool):  # an idle object, and a spare in the slots
        pass
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    # The Borrows hold the state, which holds the factory, the cell and so
    # the pool object: nothing was collected, nor cleared.
    assert alive() is not None
    assert marker() is not None
    for _ in range(2):
        # The idle object, then a new one: the factory works.
        with outside as obj, second as other:
            assert isinstance(obj, Node)
            assert isinstance(other, Node)
            assert other is not obj
    still = alive()
    assert still is not None
    assert spare_count(pool_state(still)) == 1
    s = still.stats()
    assert (s.in_use, s.created, s.idle) == (0, 2, 2)
    del still, outside, second
    gc.collect()
    assert alive() is None
    assert marker() is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("no_gc")
def test_a_borrow_outlives_its_pool_object_and_its_state_goes_with_it(kind: str) -> None:
    made: list[weakref.ref[Node]] = []

    def make() -> Node:
        obj = Node()
        made.append(weakref.ref(obj))
        return obj

    kept = borrow(make_pool(kind, make))
    gc.collect()
    with kept as obj:
        assert isinstance(obj, Node)
    with kept as again:
        assert again is obj  # given back to the state, and lent again
    del obj, again
    assert made[0]() is not None  # idle, in the state the Borrow holds
    del kept
    assert made[0]() is None  # the state, freed with its last holder
    assert len(made) == 1


# --- no spare is reachable through the collector ---


def test_threads_running_blocks_never_show_a_spare_to_the_collector() -> None:
    # Threads run blocks (some on named Borrows, not kept) while one looks
    # through the pool and its state, and the collector runs: no Borrow is
    # ever shown by either, and once the threads are done no spare is in
    # gc.get_objects() and each reference to the state is shown once.
    gc.collect()  # other tests' garbage Borrows, if any, gone before counting
    pool = ObjectPool(Thing)
    box = [pool_state(pool)]
    before = listed_borrows()
    done = threading.Event()
    shown: list[object] = []

    def work(i: int) -> None:
        if i == 0:
            try:
                for n in range(400):
                    for holder in (pool, box[0]):
                        shown.extend(r for r in gc.get_referents(holder) if is_borrow(r))
                    if n % 50 == 0:
                        gc.collect()
            finally:
                done.set()
            return
        while not done.is_set():
            with pool.borrow():
                pass
            named = pool.borrow()
            with named, pool.borrow():
                pass

    assert run_threads(work, 3) == []
    assert shown == []
    gc.collect()  # a Borrow let go on another thread may wait for it (free-threaded)
    assert listed_borrows() == before
    assert spare_count(box[0]) >= 1
    shown_to_collector, counted = state_references(box)
    assert shown_to_collector == counted
    assert pool.stats().in_use == 0
    assert balanced(pool)


# --- collections run from a hook, a block, a finalizer ---


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["reset", "block", "finalizer"])
def test_a_collection_from_a_hook_a_block_or_a_pooled_objects_finalizer(
    kind: str, where: str
) -> None:
    # While spares are in the slots, and the pool is in a cycle with its
    # factory (so each collection traverses the state): the reset hook, a
    # block, or the finalizer of an object the pool lets go of (discarded,
    # its last reference dropped by the block's exit, before the exiting
    # Borrow is offered as a spare) collects.
    collections: list[int] = []

    class Pooled(Node):
        def __del__(self) -> None:
            if where == "finalizer":
                collections.append(gc.collect())

    def reset(obj: Node) -> None:
        if where == "reset":
            collections.append(gc.collect())

    cell: list[object] = []

    def make() -> Node:
        obj = Pooled()
        obj.link = (obj, cell)  # a cycle of its own, through the pool
        return obj

    pool = make_pool(kind, make, reset=reset)
    cell.append(pool)
    box = [pool_state(pool)]
    for _ in range(20):
        with borrow(pool), borrow(pool):  # two spares
            pass
        with borrow(pool) as obj:  # one spare left
            if where == "block":
                collections.append(gc.collect())
            pool.discard(obj)
            obj.link = None
            del obj  # the exit drops its last reference
        assert spare_count(box[0]) == 2
    assert len(collections) >= 20
    s = pool.stats()
    assert (s.in_use, s.discarded) == (0, 20)
    assert balanced(pool)
    shown_to_collector, counted = state_references(box)
    assert shown_to_collector == counted
    alive = weakref.ref(pool)
    del pool
    box.clear()
    cell.clear()
    gc.collect()
    assert alive() is None


# --- Python code run during a collection uses Borrows (from s7-review) ---

# Finalizers of objects in a dying pool's cycle (the pool's hook holds
# them, or an idle object does) that use the pool during the collection:
# a Borrow kept (resurrecting the state through a new holder), a spare
# taken and given back, a Borrow stored into the garbage, a nested
# collection, a Borrow entered and kept, the pool closed. With a pool
# subclass that refers to itself through its __dict__ too.
FINALIZERS = textwrap.dedent(
    """
    import gc, sys, weakref
    from shardpool import ObjectPool, PoolClosed

    kept = []

    class Thing:
        pass

    class Fin:
        def __init__(self, pool, mode):
            self.pool = pool
            self.mode = mode

        def __del__(self):
            p = self.pool
            try:
                if self.mode == 0:
                    kept.append(p.borrow())
                elif self.mode == 1:
                    with p.borrow():
                        pass
                elif self.mode == 2:
                    self.b = p.borrow()
                elif self.mode == 3:
                    gc.collect()
                elif self.mode == 4:
                    b = p.borrow()
                    b.__enter__()
                    kept.append(b)
                elif self.mode == 5:
                    p.close()
            except PoolClosed:
                pass

    class MyPool(ObjectPool):
        pass

    def make(mode, sub, idle_fin):
        holder = []

        def reset(obj):
            holder.append(None)
            holder.pop()
            if mode == 3:
                gc.collect()

        pool = (MyPool if sub else ObjectPool)(Thing, reset=reset)
        for _ in range(3):
            with pool.borrow():
                pass
        holder.append(Fin(pool, mode))  # pool -> state -> reset -> Fin -> pool
        if sub:
            pool.me = pool
        if idle_fin:
            with pool.borrow() as obj:
                obj.fin = Fin(pool, mode)  # idle object -> Fin -> pool
        return weakref.ref(pool)

    gc.disable()
    left = []
    for i in range(240):
        mode, sub, idle_fin = i % 6, (i // 6) % 2, (i // 12) % 2
        alive = make(mode, sub, idle_fin)
        gc.collect()
        for b in kept:
            try:
                try:
                    b.__exit__(None, None, None)
                except RuntimeError:
                    with b:
                        pass
            except PoolClosed:
                pass
        kept.clear()
        gc.collect()
        if alive() is not None:
            left.append((mode, sub, idle_fin))
    print(sorted(set(left)))
    """
)


def test_finalizers_using_a_dying_pool_during_its_collection() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", FINALIZERS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stderr  # every pool collected


@pytest.mark.usefixtures("no_gc")
def test_a_weakref_callback_takes_a_spare_and_keeps_a_block_during_a_collection() -> None:
    # The garbage holds a named Borrow of a live pool (and a dying pool with
    # spares); the callback, run between the collector's passes, takes the
    # live pool's spare, enters it and keeps it, and collects again.
    live = ObjectPool(Thing)
    kept: list[Borrow[Thing]] = []
    fired: list[int] = []

    class Holder:
        me: object
        b: Borrow[Thing]
        dying: ObjectPool[Thing]
        db: Borrow[Thing]

    def callback(ref: object) -> None:
        fired.append(1)
        b = live.borrow()
        b.__enter__()
        kept.append(b)
        gc.collect()

    for _ in range(50):
        dying = ObjectPool(Thing, reset=lambda obj: None)
        with dying.borrow(), live.borrow():
            pass
        holder = Holder()
        holder.me = holder
        holder.b = live.borrow()
        holder.dying = dying
        holder.db = dying.borrow()
        watch = weakref.ref(holder, callback)
        del holder, dying
        gc.collect()
        for b in kept:
            b.__exit__(None, None, None)
        kept.clear()
        del watch
    assert len(fired) == 50
    s = live.stats()
    assert (s.in_use, s.created) == (0, s.destroyed + s.idle)


def test_borrows_used_after_their_pool_object_is_dropped_or_closed() -> None:
    for i in range(60):
        pool = ObjectPool(Thing, checked=True)
        held, other = pool.borrow(), pool.borrow()
        held.__enter__()
        if i % 2:
            pool.close()
        del pool
        gc.collect()
        held.__exit__(None, None, None)  # the state takes it back (or destroys it)
        for b in (held, other):
            try:
                with b as obj:
                    assert isinstance(obj, Thing)
            except PoolClosed:
                assert i % 2


def test_a_borrow_entered_on_a_thread_exited_on_another_after_its_pool_is_gone() -> None:
    for _ in range(20):
        pool = ObjectPool(Thing)
        alive = weakref.ref(pool)
        b = pool.borrow()
        t = threading.Thread(target=b.__enter__)
        t.start()
        t.join()
        del pool
        gc.collect()
        assert alive() is None
        t = threading.Thread(target=b.__exit__, args=(None, None, None))
        t.start()
        t.join()
        with b as obj:
            assert isinstance(obj, Thing)


def test_a_block_never_exited_leaves_no_entry_that_strands_a_later_pool() -> None:
    # The block's lent entry (its state's address, the object's) stays when
    # its Borrow is dropped unexited; a later pool's state may get the same
    # address and lend the same object: its discard and blocks keep the books.
    for _ in range(100):
        pool = ObjectPool(Thing)
        b = pool.borrow()
        obj = b.__enter__()
        del b, pool
        gc.collect()
        again = ObjectPool(lambda obj=obj: obj)  # type: ignore[misc]
        with again.borrow() as same:
            assert same is obj
            again.discard(same)
        with again.borrow():
            pass
        s = again.stats()
        assert (s.in_use, s.discarded, s.created) == (0, 1, s.destroyed + s.idle)


# Threads run blocks on whichever pool is current (some dropping their
# pool reference before entering, some entering a Borrow twice), one looks
# for Borrows through the current pool and its state (it must find none:
# spares are untracked, the state shows only what they hold), one
# collects; the main thread makes pools (object and tiered), closes some
# and drops each. Nothing crashes or raises but a closed pool's refusal;
# the pools kept have their books balanced and nothing outstanding.
DROPPED_UNDER_LOAD = textwrap.dedent(
    """
    import gc, random, sys, threading, time
    from shardpool import Borrow, ObjectPool, PoolClosed, PoolTimeout, TieredPool

    class Thing:
        pass

    stop = threading.Event()
    cur = [None]
    errors = []

    def user(seed):
        r = random.Random(seed)
        while not stop.is_set():
            p = cur[0]
            if p is None:
                continue
            try:
                if isinstance(p, TieredPool):
                    with p.borrow(r.choice([8, 40])):
                        pass
                else:
                    b = p.borrow(0.01)
                    del p
                    with b:
                        pass
                    if r.random() < 0.2:
                        with b:
                            pass
            except (PoolClosed, PoolTimeout):
                pass
            except Exception as e:
                errors.append(repr(e))

    def snooper():
        while not stop.is_set():
            p = cur[0]
            if p is None:
                continue
            try:
                shown = gc.get_referents(p)
                states = [r for r in shown if type(r).__name__.endswith("PoolState")]
                shown += gc.get_referents(*states)
                if len(states) != 1 or any(isinstance(r, Borrow) for r in shown):
                    errors.append("snooper: a Borrow shown by a pool or its state")
            except Exception as e:
                errors.append("snooper: " + repr(e))

    def collector():
        while not stop.is_set():
            gc.collect()
            time.sleep(0.001)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=snooper), threading.Thread(target=collector)]
    for t in threads:
        t.start()
    kept = []
    try:
        for i in range(int(sys.argv[1])):
            if i % 4 == 3:
                p = TieredPool(lambda n: bytearray(n), [16, 64], size_of=len, track=True)
            else:
                p = ObjectPool(Thing, max_size=3, checked=bool(i % 2), track=True)
            cur[0] = p
            time.sleep(0.003)
            if i % 3 == 0:
                p.close()
            cur[0] = None
            if i % 5 == 0:
                kept.append(p)
            del p
    finally:
        stop.set()
        for t in threads:
            t.join()
    bad = []
    for p in kept:
        s = p.stats()
        if isinstance(p, ObjectPool) and (s.in_use, s.created) != (0, s.destroyed + s.idle):
            bad.append(s)
        if p.outstanding():
            bad.append(p.outstanding())
    print(errors[:3], bad[:3])
    """
)


def test_pools_dropped_and_closed_while_threads_use_their_borrows_and_collect() -> None:
    done = subprocess.run(
        [sys.executable, "-c", DROPPED_UNDER_LOAD, "80"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []", done.stderr
