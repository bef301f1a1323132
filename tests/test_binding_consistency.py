"""The methods every pool class shares behave the same in each: the binding
writes them once (``pool_methods!`` in src/python/pool_class.rs), and this
file checks each class the same way, so that a class that drifts fails."""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from shardpool import BlockPool, BufferPool, ObjectPool, TieredPool


@dataclass(frozen=True)
class Kind:
    cls: type
    make: Callable[..., Any]  # make(**kwargs) -> pool
    take: Callable[[Any], Any]  # take(pool) -> item handed out
    give: Callable[[Any, Any], None]  # give(pool, item): back to the pool


def _release(_pool: Any, item: Any) -> None:
    item.release()


KINDS = [
    Kind(ObjectPool, lambda **kw: ObjectPool(list, **kw), lambda p: p.get(), lambda p, o: p.put(o)),
    Kind(
        TieredPool,
        lambda **kw: TieredPool(bytearray, [16], **kw),
        lambda p: p.get(8),
        lambda p, o: p.put(o),
    ),
    Kind(BlockPool, lambda **kw: BlockPool(**kw), lambda p: p.get(8), _release),
    Kind(BufferPool, lambda **kw: BufferPool(**kw), lambda p: p.get(), _release),
]
IDS = [kind.cls.__name__ for kind in KINDS]
every_kind = pytest.mark.parametrize("kind", KINDS, ids=IDS)

SHARED = [
    "close",
    "outstanding",
    "name",
    "track",
    "closed",
    "__len__",
    "__enter__",
    "__exit__",
    "__repr__",
    "__reduce__",
    "__copy__",
    "__deepcopy__",
]


@every_kind
def test_every_pool_class_defines_the_shared_methods_itself(kind):
    missing = [name for name in SHARED if name not in vars(kind.cls)]
    assert not missing, f"{kind.cls.__name__} lacks {missing}"


@every_kind
@pytest.mark.parametrize("name", ["close", "outstanding", "name", "track", "closed"])
def test_the_shared_methods_are_documented(kind, name):
    doc = getattr(kind.cls, name).__doc__
    assert (doc or "").strip(), f"{kind.cls.__name__}.{name} has no docstring"


@every_kind
@pytest.mark.parametrize(
    "how", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"]
)
def test_copying_or_pickling_a_pool_is_refused_naming_the_class(kind, how):
    pool = kind.make()
    item = kind.take(pool)
    verb = "pickle" if how is pickle.dumps else "copy"
    try:
        with pytest.raises(TypeError, match=rf"cannot {verb} '{kind.cls.__name__}' object"):
            how(pool)
    finally:
        # Nothing changed: the item still goes back, the pool still works.
        kind.give(pool, item)
    kind.give(pool, kind.take(pool))
    assert not pool.closed
    pool.close()


@every_kind
def test_repr_names_the_class_the_name_and_closed(kind):
    pool = kind.make(name="web")
    text = repr(pool)
    assert re.fullmatch(rf"<{kind.cls.__name__} name='web' \S.*>", text), text
    pool.close()
    assert repr(pool).startswith(f"<{kind.cls.__name__} name='web' closed "), repr(pool)
    anonymous = kind.make()
    assert repr(anonymous).startswith(f"<{kind.cls.__name__} "), repr(anonymous)
    assert "name=" not in repr(anonymous)
    anonymous.close()


@every_kind
def test_name_and_track_are_read_back(kind):
    pool = kind.make(name="n", track=True)
    assert (pool.name, pool.track) == ("n", True)
    plain = kind.make()
    assert (plain.name, plain.track) == (None, False)
    pool.close()
    plain.close()


@every_kind
def test_outstanding_needs_track_and_lists_what_is_out(kind):
    plain = kind.make()
    with pytest.raises(RuntimeError, match="track=True"):
        plain.outstanding()
    pool = kind.make(track=True)
    assert pool.outstanding() == []
    item = kind.take(pool)
    sites = pool.outstanding()
    assert len(sites) == 1
    assert "test_outstanding_needs_track_and_lists_what_is_out" in sites[0]
    kind.give(pool, item)
    assert pool.outstanding() == []
    plain.close()
    pool.close()


@every_kind
def test_close_warns_naming_the_pool_and_what_is_still_out(kind):
    pool = kind.make(name="jobs", track=True)
    item = kind.take(pool)
    with pytest.warns(ResourceWarning, match=rf"{kind.cls.__name__} 'jobs' closed with 1 "):
        pool.close()
    assert pool.closed
    kind.give(pool, item)  # after close: destroyed or freed, no error
    pool.close()  # again: nothing to do, nothing to warn about


@every_kind
def test_len_counts_idle_items(kind):
    pool = kind.make()
    assert len(pool) == 0
    kind.give(pool, kind.take(pool))
    assert len(pool) == 1
    pool.close()
    assert len(pool) == 0


@every_kind
def test_with_closes_the_pool_and_lets_exceptions_through(kind):
    with kind.make() as pool:
        assert isinstance(pool, kind.cls)
        assert not pool.closed
    assert pool.closed
    with pytest.raises(KeyError), kind.make() as other:
        raise KeyError("inside")
    assert other.closed
    with pytest.raises(TypeError):
        other.__exit__()
