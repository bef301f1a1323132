"""Blocks and buffers collected: without release (their memory goes back
to the pool, with a ResourceWarning), after their release (silently), and
while an exception is in flight.

A temporary Block or Buffer that is never released is collected while the
stack unwinds; its ResourceWarning must neither replace nor swallow the
exception that is propagating (this once crashed the interpreter).
"""

import gc
import subprocess
import sys
import textwrap
import warnings

import pytest

from shardpool import BlockPool, BufferPool

# Each kind: its pool, and how a test gets one object from it.
KINDS = {"block": (BlockPool, lambda pool: pool.get(10)), "buffer": (BufferPool, BufferPool.get)}

CASES = {
    "list display": "[make(), 1 / 0]",
    "call argument": "print(make(), undefined_name)",
    "subscript": "make()[0]",
}


@pytest.mark.parametrize("kind", ["block", "buffer"])
@pytest.mark.parametrize("expression", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("warnings_filter", ["ignore", "always", "error"])
def test_exception_in_flight_survives_the_collection(
    kind: str, expression: str, warnings_filter: str
) -> None:
    script = textwrap.dedent(
        f"""
        import warnings
        import shardpool

        warnings.simplefilter({warnings_filter!r})
        blocks, buffers = shardpool.BlockPool(), shardpool.BufferPool()
        make = {{"block": lambda: blocks.get(10), "buffer": buffers.get}}[{kind!r}]
        try:
            {expression}
        except BaseException as e:
            print("caught", type(e).__name__)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = {
        "[make(), 1 / 0]": "ZeroDivisionError",
        "print(make(), undefined_name)": "NameError",
        "make()[0]": "TypeError",
    }[expression]
    assert done.stdout.strip() == f"caught {expected}"


def test_block_collected_without_release_goes_back_with_a_resource_warning():
    pool = BlockPool()
    block = pool.get(1000)
    with pytest.warns(ResourceWarning, match="garbage-collected without release"):
        del block
    s = pool.stats()
    assert (s.puts, s.bytes_idle, s.bytes_in_use, len(pool)) == (1, 1024, 0, 1)


def test_buffer_collected_without_release_goes_back_with_a_resource_warning():
    pool = BufferPool()
    buf = pool.get()
    buf.write(b"abc")
    with pytest.warns(ResourceWarning, match="garbage-collected without release"):
        del buf
    s = pool.stats()
    assert (s.puts, s.idle, s.in_use) == (1, 1, 0)


def test_resource_warning_turned_error_is_reported_and_memory_still_returns(unraisable):
    pool = BlockPool()
    block = pool.get(1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        del block
        gc.collect()
    assert len(unraisable) == 1
    assert issubclass(unraisable[0].exc_type, ResourceWarning)
    assert pool.stats().bytes_idle == 1024


@pytest.mark.parametrize("kind", KINDS)
def test_released_or_deferred_objects_are_collected_silently(kind):
    make_pool, get = KINDS[kind]
    pool = make_pool()
    obj = get(pool)
    obj.release()
    with get(pool) as other:
        view = memoryview(other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del obj, other
        gc.collect()
        view.release()
        del view
        gc.collect()
    assert pool.stats().puts == 2
