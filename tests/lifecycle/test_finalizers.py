"""Blocks and buffers collected while an exception is in flight.

A temporary Block or Buffer that is never released is collected while the
stack unwinds; its ResourceWarning must neither replace nor swallow the
exception that is propagating (this once crashed the interpreter).
"""

import subprocess
import sys
import textwrap

import pytest

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
