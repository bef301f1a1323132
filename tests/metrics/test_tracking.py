"""Pool names, leak tracking (``track=True``, ``outstanding()``) and the
``zero="poison"`` debugging mode."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from shardpool import BlockPool, BufferPool, ObjectPool, TieredPool


def _object_pool(**kw: Any) -> ObjectPool[Any]:
    return ObjectPool(list, **kw)


def _tiered_pool(**kw: Any) -> TieredPool[Any]:
    return TieredPool(bytearray, [64, 256], **kw)


POOLS: dict[str, Callable[..., Any]] = {
    "ObjectPool": _object_pool,
    "TieredPool": _tiered_pool,
    "BlockPool": BlockPool,
    "BufferPool": BufferPool,
}


def acquire(pool: Any) -> Any:
    if isinstance(pool, TieredPool):
        return pool.get(100)
    if isinstance(pool, BlockPool):
        return pool.get(100)
    return pool.get()


def give_back(pool: Any, item: Any) -> None:
    if isinstance(pool, BlockPool | BufferPool):
        item.release()
    else:
        pool.put(item)


@pytest.mark.parametrize("kind", POOLS)
def test_name_shows_in_repr_and_property(kind: str) -> None:
    pool = POOLS[kind](name="parsers")
    assert pool.name == "parsers"
    assert "name='parsers'" in repr(pool)
    unnamed = POOLS[kind]()
    assert unnamed.name is None
    assert "name=" not in repr(unnamed)


@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize(("arg", "value"), [("name", 3), ("name", b"x"), ("track", 1)])
def test_name_and_track_are_type_checked(kind: str, arg: str, value: object) -> None:
    with pytest.raises(TypeError, match=arg):
        POOLS[kind](**{arg: value})


@pytest.mark.parametrize("kind", POOLS)
def test_outstanding_lists_the_acquisition_sites_of_what_is_out(kind: str) -> None:
    pool = POOLS[kind](track=True)
    assert pool.track
    assert pool.outstanding() == []

    def site_one() -> Any:
        return acquire(pool)

    def site_two() -> Any:
        return acquire(pool)

    first, second = site_one(), site_two()
    sites = pool.outstanding()
    assert len(sites) == 2
    # Oldest first, each naming the function that acquired it.
    assert "site_one" in sites[0]
    assert "site_two" in sites[1]
    give_back(pool, first)
    sites = pool.outstanding()
    assert len(sites) == 1
    assert "site_two" in sites[0]
    give_back(pool, second)
    assert pool.outstanding() == []
    # Reuse records the new holder, not the old one.
    again = site_one()
    assert len(pool.outstanding()) == 1
    give_back(pool, again)
    assert pool.outstanding() == []


@pytest.mark.parametrize("kind", POOLS)
def test_outstanding_without_tracking_is_an_error_not_an_empty_list(kind: str) -> None:
    pool = POOLS[kind]()
    assert not pool.track
    with pytest.raises(RuntimeError, match="track=True"):
        pool.outstanding()


@pytest.mark.parametrize("kind", POOLS)
def test_close_with_items_out_warns_naming_pool_and_site(kind: str) -> None:
    pool = POOLS[kind](track=True, name="leaky")

    def forgetful_handler() -> Any:
        return acquire(pool)

    item = forgetful_handler()
    with pytest.warns(ResourceWarning, match="leaky") as record:
        pool.close()
    message = str(record[0].message)
    assert "1 " in message
    assert "forgetful_handler" in message
    give_back(pool, item)
    # Nothing out any more: closing again is quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool.close()


@pytest.mark.parametrize("kind", POOLS)
def test_close_with_nothing_out_does_not_warn(kind: str) -> None:
    pool = POOLS[kind](track=True)
    give_back(pool, acquire(pool))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool.close()


def test_object_pool_batches_are_tracked() -> None:
    pool = ObjectPool(list, track=True)
    objs = pool.get_many(5)
    assert len(pool.outstanding()) == 5
    pool.put_many(objs[:3])
    assert len(pool.outstanding()) == 2
    pool.put_many(objs[3:])
    assert pool.outstanding() == []


def test_refused_put_keeps_the_holders_record() -> None:
    pool = ObjectPool(list, track=True, checked=True)
    obj = pool.get()
    pool.put(obj)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(obj)
    assert pool.outstanding() == []
    held = pool.get()
    with pytest.raises(ValueError, match="not handed out"):
        pool.put([])  # a foreign object changes nothing
    assert len(pool.outstanding()) == 1
    pool.put(held)


def test_tiered_oversize_objects_are_tracked_until_returned() -> None:
    pool = TieredPool(bytearray, [64], track=True)
    big = pool.get(1000)
    assert len(pool.outstanding()) == 1
    pool.put(big)
    assert pool.outstanding() == []


@pytest.mark.parametrize("kind", ["BlockPool", "BufferPool"])
def test_collected_without_release_warns_with_site(kind: str, unraisable: list[Any]) -> None:
    pool = POOLS[kind](track=True, name="net")

    def lost_in_handler() -> None:
        acquire(pool)  # dropped at once, never released

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lost_in_handler()
        gc.collect()
    messages = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert len(messages) == 1, messages
    assert "'net'" in messages[0]
    assert "lost_in_handler" in messages[0]
    assert pool.outstanding() == []
    assert not unraisable


def test_a_block_let_go_while_a_view_lives_is_not_outstanding() -> None:
    pool = BlockPool(track=True)
    with pool.get(64) as block:
        view = memoryview(block)
        assert len(pool.outstanding()) == 1
    assert pool.outstanding() == []  # its holder let go
    assert pool.stats().in_use == 1  # the view still holds the memory
    view.release()
    del view, block
    assert pool.stats().in_use == 0
    assert pool.outstanding() == []


def test_poison_fills_released_blocks() -> None:
    pool = BlockPool(zero="poison", classes=[256])
    assert pool.zero == "poison"
    block = pool.get(256)
    memoryview(block)[:] = b"\x01" * 256
    stale = memoryview(block).tobytes()  # what a holder saw
    block.release()
    del block  # exported: the memory comes back with the Block object
    again = pool.get(256)
    assert bytes(again) == b"\xdb" * 256
    assert stale != bytes(again)
    again.release()
    # zeroed=True still gives zeros in poison mode.
    with pool.get(256, zeroed=True) as clean:
        assert bytes(clean) == bytes(256)


@pytest.mark.parametrize("zero", ["release", "acquire"])
def test_zeroing_hides_a_previous_holders_bytes(zero: str) -> None:
    pool = BlockPool(zero=zero, classes=[4096])
    with pool.get(4096) as block:
        memoryview(block)[:] = b"secret!!" * 512
    with pool.get(100) as block:
        assert bytes(block) == bytes(100)
    with pool.get(4096) as block:
        assert b"secret" not in bytes(block)
