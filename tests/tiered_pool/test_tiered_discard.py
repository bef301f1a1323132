"""TieredPool.discard and discard_on: the object is destroyed, counted as
discarded in the tier it came from (or outside the tiers, for oversize
objects); a foreign or returned object is refused, changing nothing; the
with-block exits of borrow() and aborrow() follow ObjectPool's."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shardpool import TieredPool

from helpers import Recorder, snapshot


class Broken(Exception):
    pass


def books_balance(pool: TieredPool) -> bool:
    s = pool.stats()
    rows = pool.tier_stats().values()
    return s.created == s.destroyed + s.idle + s.in_use and all(
        t.created == t.destroyed + t.idle + t.in_use for t in rows
    )


def test_discard_destroys_and_counts_in_the_tier_it_came_from():
    destroy = Recorder()
    pool = TieredPool(bytearray, [16, 256], destroy=destroy)
    small = pool.get(10)
    small.extend(b"x" * 100)  # now the 256 tier's size: still counted at 16
    big = pool.get(10_000)  # oversize
    pool.discard(small)
    pool.discard(big)
    assert destroy.calls == [small, big]
    s = pool.stats()
    assert (s.discarded, s.destroyed, s.puts, s.in_use) == (2, 2, 0, 0)
    tiers = pool.tier_stats()
    assert (tiers[16].discarded, tiers[256].discarded) == (1, 0)
    assert books_balance(pool)


def test_a_broken_object_is_not_measured_by_a_checked_pool():
    # size_of would raise on it; a checked pool knows its tier without it.
    def size_of(obj):
        if obj.get("broken"):
            raise OSError("connection lost")
        return 16

    pool = TieredPool(lambda size: {}, [16], size_of=size_of)
    obj = pool.get(16)
    obj["broken"] = True
    pool.discard(obj)
    assert pool.stats().discarded == 1


def test_foreign_and_repeated_discards_are_refused_changing_nothing():
    destroy = Recorder()
    pool = TieredPool(bytearray, [16], destroy=destroy)
    held, returned = pool.get(1), pool.get(1)
    pool.put(returned)
    before = snapshot(pool)
    for stranger in (bytearray(16), returned, TieredPool(bytearray, [16]).get(1)):
        with pytest.raises(ValueError, match="not handed out"):
            pool.discard(stranger)
        assert snapshot(pool) == before
    assert destroy.calls == []
    pool.discard(held)
    with pytest.raises(ValueError, match="discarded already"):
        pool.discard(held)


def test_an_unchecked_pool_discards_in_the_tier_the_size_files():
    pool = TieredPool(bytearray, [16, 256], checked=False)
    pool.discard(pool.get(200))
    pool.discard(bytearray(20))  # cannot tell: destroyed and counted
    tiers = pool.tier_stats()
    assert (tiers[16].discarded, tiers[256].discarded) == (1, 1)
    assert pool.stats().discarded == 2


def test_discard_inside_borrow_and_aborrow_ends_the_holding():
    pool = TieredPool(bytearray, [16])
    with pool.borrow(1) as obj:
        pool.discard(obj)

    async def main() -> None:
        async with pool.aborrow(1) as obj:
            pool.discard(obj)

    asyncio.run(main())
    s = pool.stats()
    assert (s.discarded, s.puts, s.idle, s.in_use) == (2, 0, 0, 0)
    assert books_balance(pool)


def test_discard_on_discards_for_listed_exceptions_only():
    destroy = Recorder()
    pool = TieredPool(bytearray, [16], destroy=destroy, discard_on=(Broken, KeyboardInterrupt))
    assert pool.discard_on == (Broken, KeyboardInterrupt)
    with pytest.raises(Broken), pool.borrow(1) as obj:
        raise Broken
    assert destroy.calls == [obj]
    with pytest.raises(KeyboardInterrupt), pool.borrow(1):
        raise KeyboardInterrupt
    with pytest.raises(KeyError), pool.borrow(1):
        raise KeyError
    with pool.borrow(1):
        pass

    async def main() -> None:
        with pytest.raises(Broken):
            async with pool.aborrow(1):
                raise Broken

    asyncio.run(main())
    s = pool.stats()
    assert (s.discarded, s.puts, s.in_use) == (3, 2, 0)
    assert TieredPool(bytearray, [16]).discard_on == ()
    assert books_balance(pool)


def test_a_discard_from_another_thread_ends_a_borrow_block():
    pool = TieredPool(bytearray, [16])
    with pool.borrow(10) as obj:
        helper = threading.Thread(target=pool.discard, args=(obj,))
        helper.start()
        helper.join(5)
    s = pool.stats()
    assert (s.discarded, s.puts, s.in_use, s.idle) == (1, 0, 0, 0)
    assert books_balance(pool)
