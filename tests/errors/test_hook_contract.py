"""What the pool does with what its hooks return or raise (issue 15):

- ``validate`` must answer ``True`` or ``False`` (anything else: ``TypeError``
  naming ``validate``, the object destroyed); a validator that raises an
  ``Exception`` rejects the object (destroyed, ``invalid``, logged) and the
  next one is tried; ``KeyboardInterrupt``/``SystemExit`` propagate;
- a failing ``reset`` at the end of a ``borrow()``/``aborrow()`` block that
  is already propagating an exception does not replace it: the reset error
  is attached as a note and logged, the object destroyed;
- coroutine functions are refused as hooks at construction, and a hook
  that returns an awaitable anyway is refused at its first call, with the
  awaitable closed;
- the ``shardpool`` logger records what the pool swallows or decides.

Each for threads and asyncio where both apply, and for ``TieredPool`` where
it has the hook.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import warnings

import pytest

from shardpool import ObjectPool, TieredPool

from helpers import Boom, Recorder, Thing, balanced, call_then_let_interrupts_in


def sized(size: int) -> bytearray:
    return bytearray(size)


# --- validate ---


def test_a_validator_that_raises_rejects_the_object_and_the_next_is_tried(pool_log):
    seen = []

    def validate(obj):
        seen.append(obj)
        if obj.data:
            raise Boom("broken")
        return True

    destroy = Recorder()
    pool = ObjectPool(Thing, validate=validate, destroy=destroy, shards=1, name="db")
    bad, good = pool.get(), pool.get()
    bad.data.append(1)
    pool.put(bad)
    pool.put(good)
    assert pool.get() is good
    assert seen == [bad, good]
    assert destroy.calls == [bad]
    s = pool.stats()
    assert (s.invalid, s.destroyed, s.hits, s.in_use) == (1, 1, 1, 1)
    assert balanced(pool)
    [record] = pool_log.at(logging.WARNING)
    assert "ObjectPool 'db'" in record.getMessage()
    assert "validate(" in record.getMessage()
    assert isinstance(record.exc_info[1], Boom)


def test_a_validator_that_raises_on_every_object_ends_with_a_new_one(pool_log):
    def validate(obj):
        raise Boom("down")

    pool = ObjectPool(Thing, prefill=3, validate=validate, max_size=3)
    obj = pool.get(timeout=0)
    s = pool.stats()
    assert (s.invalid, s.created, s.misses, s.in_use, s.idle) == (3, 4, 1, 1, 0)
    assert len(pool_log.errors(logging.WARNING)) == 3
    pool.put(obj)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_or_system_exit_from_a_validator_propagates(exc_type):
    def validate(obj):
        raise exc_type()

    destroy = Recorder()
    pool = ObjectPool(Thing, validate=validate, destroy=destroy, max_size=2)
    obj = pool.get()
    pool.put(obj)
    with pytest.raises(exc_type):
        pool.get()
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.invalid, s.in_use, s.idle) == (1, 0, 0)
    assert balanced(pool)


def test_tiered_validator_that_raises_is_a_rejection_and_a_non_bool_a_type_error(pool_log):
    verdict: list = [Boom("x")]

    def validate(obj):
        if isinstance(verdict[0], BaseException):
            raise verdict[0]
        return verdict[0]

    pool = TieredPool(sized, [16], validate=validate)
    first = pool.get(1)
    pool.put(first)
    second = pool.get(1)
    assert second is not first
    assert pool.stats().invalid == 1
    pool.put(second)
    verdict[0] = None
    with pytest.raises(TypeError, match="validate must return True or False, got NoneType"):
        pool.get(1)
    s = pool.stats()
    assert (s.invalid, s.in_use, s.idle) == (2, 0, 0)
    assert balanced(pool)


def test_a_non_bool_verdict_fails_an_aget_too():
    pool = ObjectPool(Thing, validate=lambda o: None, max_size=1)
    pool.put(pool.get())
    with pytest.raises(TypeError, match="validate"):
        asyncio.run(pool.aget())
    assert balanced(pool)
    assert pool.stats().in_use == 0


def test_a_raising_validator_in_threads_keeps_the_books(pool_log):
    def validate(obj):
        if obj.data:
            raise Boom("broken")
        return True

    pool = ObjectPool(Thing, validate=validate, max_size=4, timeout=10)
    errors: list[BaseException] = []

    def work():
        try:
            for i in range(300):
                with pool.borrow() as obj:
                    if i % 7 == 0:
                        obj.data.append(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    s = pool.stats()
    assert s.in_use == 0
    assert balanced(pool)
    assert s.invalid == len(pool_log.errors(logging.WARNING)) > 0


# --- reset failing while a block propagates an exception ---


def failing_reset(obj):
    raise OSError("reset failed")


def test_a_failing_reset_does_not_replace_the_blocks_exception(pool_log):
    destroy = Recorder()
    pool = ObjectPool(Thing, reset=failing_reset, destroy=destroy, max_size=1)
    with pytest.raises(KeyError) as caught, pool.borrow() as obj:
        raise KeyError("body")
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1
    assert "OSError('reset failed')" in notes[0]
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.reset_errors, s.in_use, s.idle) == (1, 0, 0)
    [record] = pool_log.at(logging.WARNING)
    assert isinstance(record.exc_info[1], OSError)
    assert pool.get(timeout=0) is not obj  # the slot was freed


def test_a_failing_reset_after_a_clean_block_still_raises():
    pool = ObjectPool(Thing, reset=failing_reset)
    with pytest.raises(OSError, match="reset failed"), pool.borrow():
        pass
    assert pool.stats().reset_errors == 1


def test_a_failing_reset_does_not_replace_an_aborrow_blocks_exception(pool_log):
    pool = ObjectPool(Thing, reset=failing_reset, max_size=1)

    async def main():
        async with pool.aborrow():
            raise KeyError("body")

    with pytest.raises(KeyError) as caught:
        asyncio.run(main())
    assert "reset failed" in caught.value.__notes__[0]
    s = pool.stats()
    assert (s.reset_errors, s.in_use, s.idle) == (1, 0, 0)
    assert len(pool_log.errors(logging.WARNING)) == 1


def test_a_keyboard_interrupt_from_reset_still_propagates_with_the_body_as_context():
    def reset(obj):
        raise KeyboardInterrupt

    pool = ObjectPool(Thing, reset=reset)
    with pytest.raises(KeyboardInterrupt) as caught, pool.borrow():
        raise KeyError("body")
    assert isinstance(caught.value.__context__, KeyError)
    assert pool.stats().in_use == 0
    assert balanced(pool)


def test_tiered_borrow_keeps_the_blocks_exception_too():
    pool = TieredPool(sized, [16], reset=failing_reset)
    with pytest.raises(KeyError) as caught, pool.borrow(4):
        raise KeyError("body")
    assert "reset failed" in caught.value.__notes__[0]
    assert pool.stats().in_use == 0
    assert balanced(pool)


# --- coroutine functions and awaitables as hooks ---


async def async_factory():
    return Thing()


class AsyncCall:
    """A callable that inspect.iscoroutinefunction does not see through."""

    def __init__(self, result=None):
        self.result = result
        self.calls = 0

    async def __call__(self, *args):
        self.calls += 1
        return self.result


@pytest.mark.parametrize("hook", ["reset", "validate", "destroy"])
def test_a_coroutine_function_hook_is_refused_at_construction(hook):
    async def coroutine_hook(obj):
        return True

    with pytest.raises(TypeError, match=rf"{hook} must be a plain callable.*asyncio"):
        ObjectPool(Thing, **{hook: coroutine_hook})
    with pytest.raises(TypeError, match=rf"{hook} must be a plain callable"):
        TieredPool(sized, [16], **{hook: coroutine_hook})


def test_an_async_factory_is_refused_at_construction():
    with pytest.raises(TypeError, match=r"factory must be a plain callable.*asyncio"):
        ObjectPool(async_factory)


def never_awaited_warnings(caught) -> list:
    return [w for w in caught if "never awaited" in str(w.message)]


def test_a_factory_returning_a_coroutine_is_refused_at_first_call_and_closed():
    factory = AsyncCall()
    pool = ObjectPool(factory, max_size=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match=r"factory returned an awaitable.*asyncio"):
            pool.get()
        gc.collect()
    assert never_awaited_warnings(caught) == []
    s = pool.stats()
    assert (s.created, s.in_use) == (0, 0)
    with pytest.raises(TypeError, match="factory returned an awaitable"):
        asyncio.run(pool.aget())  # the slot was freed: it tries again


def test_a_reset_returning_a_coroutine_is_refused_and_the_object_destroyed():
    destroy = Recorder()
    pool = ObjectPool(Thing, reset=AsyncCall(), destroy=destroy)
    obj = pool.get()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="reset returned an awaitable"):
            pool.put(obj)
        gc.collect()
    assert never_awaited_warnings(caught) == []
    assert destroy.calls == [obj]
    assert pool.stats().reset_errors == 1
    assert balanced(pool)


def test_an_async_reset_method_is_refused_at_first_call():
    class AsyncReset:
        async def reset(self):
            pass

    pool = ObjectPool(AsyncReset)
    with pytest.raises(TypeError, match="reset returned an awaitable"):
        pool.put(pool.get())
    assert pool.stats().reset_errors == 1


def test_a_validate_returning_a_coroutine_is_refused_and_the_object_destroyed():
    pool = ObjectPool(Thing, validate=AsyncCall(True), max_size=1)
    obj = pool.get()
    pool.put(obj)
    with pytest.raises(TypeError, match="validate returned an awaitable"):
        pool.get()
    s = pool.stats()
    assert (s.invalid, s.idle, s.in_use) == (1, 0, 0)


def test_a_destroy_returning_a_coroutine_is_logged(pool_log):
    destroy = AsyncCall()
    pool = ObjectPool(Thing, destroy=destroy, max_idle=1)
    a, b = pool.get(), pool.get()
    pool.put(a)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool.put(b)  # dropped: destroy runs
        gc.collect()
    assert never_awaited_warnings(caught) == []
    [error] = pool_log.errors(logging.ERROR)
    assert isinstance(error, TypeError)
    assert "destroy returned an awaitable" in str(error)
    assert pool.stats().destroyed == 1


def test_the_first_call_check_is_done_once_per_hook():
    # After a first plain result, later results are not inspected (the
    # check stays off the hot path): a factory may then make anything.
    results = iter([Thing(), Thing()])
    pool = ObjectPool(lambda: next(results))
    a, b = pool.get(), pool.get()
    assert isinstance(a, Thing)
    assert isinstance(b, Thing)


# --- logging ---


def test_a_failing_destroy_is_logged_as_an_error_with_its_traceback(pool_log, unraisable):
    def destroy(obj):
        raise Boom("destroy failed")

    pool = ObjectPool(Thing, max_idle=1, destroy=destroy, name="db")
    a, b = pool.get(), pool.get()
    pool.put(a)
    pool.put(b)  # dropped: destroy raises, logged, not propagated
    [record] = pool_log.at(logging.ERROR)
    assert record.name == "shardpool"
    assert "ObjectPool 'db': destroy(" in record.getMessage()
    assert isinstance(record.exc_info[1], Boom)
    assert unraisable == []  # logged instead, not both
    pool.close()
    assert len(pool_log.errors()) == 2


def test_a_keyboard_interrupt_in_destroy_is_raised_again_not_only_logged(pool_log, default_sigint):
    # destroy runs where no caller can take its error (a put that drops the
    # object, close): an Exception is logged (above), but Ctrl-C during it
    # must still stop the program: raised again, as Ctrl-C is, in the main
    # thread at its next check.
    def destroy(obj):
        raise KeyboardInterrupt

    pool = ObjectPool(Thing, max_idle=1, destroy=destroy, name="db")
    a, b = pool.get(), pool.get()
    pool.put(a)
    with pytest.raises(KeyboardInterrupt):
        call_then_let_interrupts_in(pool.put, b)  # dropped: destroy raises
    [record] = pool_log.at(logging.WARNING)
    assert "KeyboardInterrupt" in record.getMessage()
    s = pool.stats()
    assert (s.created, s.destroyed, s.idle, s.in_use) == (2, 1, 1, 0)


def test_a_discard_on_discard_on_is_logged_at_info(pool_log):
    pool = ObjectPool(Thing, discard_on=KeyError, name="db")
    with pytest.raises(KeyError), pool.borrow():
        raise KeyError("broken")
    [record] = pool_log.at(logging.INFO)
    assert "ObjectPool 'db': discarded Thing object" in record.getMessage()
    assert "KeyError" in record.getMessage()
    assert pool.stats().discarded == 1


def test_a_handler_that_raises_does_not_break_the_pool(unraisable):
    class Broken(logging.Handler):
        def emit(self, record):
            raise RuntimeError("handler")

        def handleError(self, record):
            raise RuntimeError("handler")

    logger = logging.getLogger("shardpool")
    handler = Broken()
    logger.addHandler(handler)
    try:
        pool = ObjectPool(Thing, max_idle=1, destroy=lambda o: 1 / 0)
        a, b = pool.get(), pool.get()
        pool.put(a)
        pool.put(b)
    finally:
        logger.removeHandler(handler)
    assert [type(u.exc_value) for u in unraisable] == [RuntimeError]
    assert pool.stats().destroyed == 1


def test_ctrl_c_in_a_log_handler_is_raised_again_not_lost(unraisable, default_sigint):
    # A handler interrupted by Ctrl-C (slow I/O) raises KeyboardInterrupt out
    # of logger.log; reported as unraisable, Ctrl-C was lost. Raised again
    # as Ctrl-C is: here the get that logged its validator's error looks for
    # it after the reject and ends with it, holding nothing.
    class Interrupted(logging.Handler):
        def emit(self, record):
            raise KeyboardInterrupt

    def validate(obj):
        raise Boom("validate")

    logger = logging.getLogger("shardpool")
    handler = Interrupted()
    logger.addHandler(handler)
    try:
        pool = ObjectPool(Thing, max_size=1, validate=validate)
        pool.put(pool.get())
        with pytest.raises(KeyboardInterrupt):
            pool.get(timeout=0)
    finally:
        logger.removeHandler(handler)
    assert unraisable == []
    s = pool.stats()
    assert (s.invalid, s.in_use, s.idle) == (1, 0, 0)


def test_nothing_is_logged_on_the_way_of_plain_gets_and_puts(pool_log):
    pool = ObjectPool(Thing, validate=lambda o: True, max_size=2)
    for _ in range(100):
        with pool.borrow():
            pass
        pool.put(pool.get())
    assert pool_log.records == []
