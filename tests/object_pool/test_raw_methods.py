"""ObjectPool.get and put are hand-written method-table entries
(src/python/raw_method.rs), not PyO3 methods: they must look and behave
exactly as PyO3's did (signatures, docs, argument errors), take only
instances, and release every reference they give up at once (PyO3's
reference pool defers a release made while its attach count is 0)."""

from __future__ import annotations

import gc
import inspect
import sys
import threading
import weakref

import pytest

from shardpool import ObjectPool, PoolTimeout

from helpers import Boom, Thing, assert_hand_written_method, refusal

# --- what introspection sees ---


@pytest.mark.parametrize(
    ("name", "text", "shown", "doc"),
    [
        (
            "get",
            "($self, timeout=...)",
            "(self, /, timeout=Ellipsis)",
            "Get an object: an idle one if any",
        ),
        ("put", "($self, obj, /)", "(self, obj, /)", "Give back an object from ``get``"),
    ],
)
def test_the_methods_are_method_descriptors_with_their_signatures(
    name: str, text: str, shown: str, doc: str
) -> None:
    assert_hand_written_method(ObjectPool, name, text, shown, doc)


def test_bound_methods_are_builtin_methods_of_the_pool() -> None:
    pool = ObjectPool(Thing)
    assert pool.get.__self__ is pool
    assert str(inspect.signature(pool.get)) == "(timeout=Ellipsis)"
    assert str(inspect.signature(pool.put)) == "(obj, /)"


# --- arguments: PyO3's messages, the pool unchanged ---


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, 2), {}, "ObjectPool.get() takes from 0 to 1 positional arguments but 2 were given"),
        ((1, 2, 3), {"x": 1}, "takes from 0 to 1 positional arguments but 3 were given"),
        ((), {"x": 1}, "ObjectPool.get() got an unexpected keyword argument 'x'"),
        ((1,), {"x": 1}, "ObjectPool.get() got an unexpected keyword argument 'x'"),
        ((), {"timeout": 1, "x": 2}, "ObjectPool.get() got an unexpected keyword argument 'x'"),
        ((), {"x": 2, "timeout": 1}, "ObjectPool.get() got an unexpected keyword argument 'x'"),
        ((1,), {"timeout": 2}, "ObjectPool.get() got multiple values for argument 'timeout'"),
        (("1",), {}, "timeout must be a number of seconds or None, got str"),
        ((), {"timeout": -1}, "timeout must be a non-negative number of seconds, got -1"),
    ],
)
def test_get_refuses_bad_arguments_as_before(args: tuple, kwargs: dict, message: str) -> None:
    pool = ObjectPool(Thing, prefill=1)
    assert message in refusal(pool, lambda: pool.get(*args, **kwargs))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "ObjectPool.put() missing 1 required positional argument: 'obj'"),
        ((1, 2), {}, "ObjectPool.put() takes 1 positional arguments but 2 were given"),
        (
            (),
            {"obj": 1},
            "ObjectPool.put() got some positional-only arguments passed as keyword "
            "arguments: 'obj'",
        ),
        ((), {"x": 1}, "ObjectPool.put() got an unexpected keyword argument 'x'"),
        ((), {"obj": 1, "x": 2}, "ObjectPool.put() got an unexpected keyword argument 'x'"),
        ((1,), {"obj": 1}, "got some positional-only arguments passed as keyword"),
    ],
)
def test_put_refuses_bad_arguments_as_before(args: tuple, kwargs: dict, message: str) -> None:
    pool = ObjectPool(Thing)
    held = pool.get()
    assert message in refusal(pool, lambda: pool.put(*args, **kwargs), TypeError)
    pool.put(held)


def test_timeout_positional_keyword_none_and_omitted() -> None:
    pool = ObjectPool(Thing, max_size=1, timeout=0)
    held = pool.get()
    for call in (pool.get, lambda: pool.get(0), lambda: pool.get(timeout=0), lambda: pool.get(0.0)):
        with pytest.raises(PoolTimeout):
            call()
    # None: no limit; served by a put from another thread.
    threading.Timer(0.05, pool.put, (held,)).start()
    assert pool.get(None) is held
    pool.put(held)
    assert pool.get(timeout=None) is held


def test_only_instances_are_taken_as_self() -> None:
    pool = ObjectPool(Thing)
    for method in (ObjectPool.get, ObjectPool.put):
        with pytest.raises(TypeError, match="doesn't apply to a 'int' object"):
            method(5, 1)
    assert ObjectPool.get(pool) is not None


def test_subclasses_inherit_and_override_them() -> None:
    class Counting(ObjectPool):
        gets = 0

        def get(self, timeout: object = ...) -> object:
            Counting.gets += 1
            return super().get() if timeout is ... else super().get(timeout)

    pool = Counting(Thing)
    obj = pool.get()
    pool.put(obj)
    assert pool.get(1) is obj
    ObjectPool.put(pool, obj)
    assert Counting.gets == 2
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(obj)


# --- references: released at once, never deferred ---


def test_a_checked_put_releases_the_holders_reference_at_once() -> None:
    pool = ObjectPool(Thing)
    obj = pool.get()
    out = sys.getrefcount(obj)  # the name, the pool's ledger, the argument
    for _ in range(3):
        pool.put(obj)
        assert sys.getrefcount(obj) == out  # the ledger's became the idle slot's
        assert pool.get() is obj
        assert sys.getrefcount(obj) == out


@pytest.mark.parametrize("how", ["closed", "surplus", "failing reset"])
def test_an_object_the_pool_destroys_in_put_is_freed_at_once(how: str) -> None:
    class Failing(Thing):
        def reset(self) -> None:
            raise Boom("reset")

    pool = ObjectPool(Failing if how == "failing reset" else Thing, max_idle=1)
    objs = [pool.get(), pool.get()]
    if how == "surplus":
        pool.put(objs.pop())  # fills max_idle
    if how == "closed":
        pool.close()
    freed: list[bool] = []
    ref = weakref.ref(objs[0], lambda _: freed.append(True))
    gc.disable()  # freed by reference counting, not by a collection
    try:
        if how == "failing reset":
            with pytest.raises(Boom):
                pool.put(objs[0])
        else:
            pool.put(objs[0])
        objs.clear()
        assert freed == [True]
        assert ref() is None
    finally:
        gc.enable()


def test_an_object_the_pool_destroys_in_get_is_freed_at_once() -> None:
    verdicts = iter([False])
    pool = ObjectPool(Thing, validate=lambda _: next(verdicts, True))
    obj = pool.get()
    pool.put(obj)
    freed: list[bool] = []
    ref = weakref.ref(obj, lambda _: freed.append(True))
    del obj
    gc.disable()
    try:
        fresh = pool.get()  # the idle one fails validation and is destroyed
        assert freed == [True]
        assert ref() is None
        assert fresh is not None
    finally:
        gc.enable()
