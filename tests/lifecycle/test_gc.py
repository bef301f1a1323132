"""Pools in reference cycles are collected by the cyclic garbage collector."""

import gc
import weakref
from typing import ClassVar

import pytest

from shardpool import ObjectPool, TieredPool


class Node:
    """An object that refers back to the pool it lives in."""

    def __init__(self) -> None:
        self.pool: object = None


def test_pool_whose_idle_objects_refer_to_it_is_collected() -> None:
    pool: ObjectPool[Node] = ObjectPool(Node)
    nodes = pool.get_many(3)
    for node in nodes:
        node.pool = pool
    pool.put_many(nodes)
    del nodes, node
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("config", [{"checked": True}, {"max_size": 4}], ids=str)
def test_checked_pool_with_a_lost_object_in_a_cycle_is_collected(config: dict[str, int]) -> None:
    pool: ObjectPool[Node] = ObjectPool(Node, **config)
    lost = pool.get()  # handed out, never returned: only the ledger and this name hold it
    lost.pool = pool
    alive = weakref.ref(pool)
    del pool, lost
    gc.collect()
    assert alive() is None


def test_tiered_pool_in_a_cycle_is_collected() -> None:
    def make(size: int) -> list[object]:
        return [None] * size

    pool: TieredPool[list[object]] = TieredPool(make, [(4, 2), (16, 2)])
    items = [pool.get(3), pool.get(10)]
    for item in items:
        item[0] = pool
    for item in items:
        pool.put(item)
    del items, item
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    assert alive() is None


def test_traversal_changes_nothing() -> None:
    pool: ObjectPool[Node] = ObjectPool(Node, max_idle=8, shards=2)
    nodes = pool.get_many(5)
    pool.put_many(nodes)
    before = pool.stats()
    for _ in range(3):
        gc.collect()
    assert pool.stats() == before
    assert len(pool) == 5
    again = pool.get_many(5)
    assert {id(n) for n in again} == {id(n) for n in nodes}
    assert pool.stats().created == 5


def test_a_pool_that_the_class_of_its_objects_refers_to_is_collected() -> None:
    # The pool remembers the class its automatic reset looked up; that
    # reference is shown to the collector too. (On b8685cd it was not: a
    # class that refers to its pool, here through a class attribute, made a
    # cycle the collector could not see, and both leaked.)
    class Conn:
        pools: ClassVar[list[object]] = []

        def reset(self) -> None:
            pass

    make = weakref.ref(Conn)  # the factory does not keep the class alive
    pool: ObjectPool[Conn] = ObjectPool(lambda: make()(), max_idle=0)  # type: ignore[misc]
    Conn.pools.append(pool)
    pool.put(pool.get())  # reset looked up (and remembered) Conn; max_idle=0 drops the object
    alive = weakref.ref(pool)
    del pool, Conn
    gc.collect()
    assert alive() is None
