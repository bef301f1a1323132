"""Free-threaded CPython (3.14t): the build configuration, and on such an
interpreter, that importing shardpool keeps the GIL disabled and that the
threaded stress tests pass without it. See docs/free-threading.md."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib

import pytest

from helpers import ROOT, TESTS

free_threaded = pytest.mark.skipif(
    not (hasattr(sys, "_is_gil_enabled") and sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="needs a free-threaded CPython (3.14t); this interpreter has a GIL",
)


def python(*args: str, gil: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    if gil is not None:
        env["PYTHON_GIL"] = gil
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=1800, env=env, cwd=ROOT
    )


def test_the_stable_abi_is_a_feature_a_free_threaded_build_turns_off():
    """`maturin build --no-default-features` must drop abi3 and nothing else."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert "abi3" in cargo["features"]["default"]
    assert all(f.startswith("pyo3?/abi3") for f in cargo["features"]["abi3"])
    pyo3 = cargo["dependencies"]["pyo3"]
    assert not [f for f in pyo3.get("features", []) if f.startswith("abi3")], (
        "abi3 on the pyo3 dependency itself cannot be turned off"
    )
    maturin = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["maturin"]
    assert "python" in maturin["features"]
    assert "abi3" not in maturin["features"]


@free_threaded
def test_importing_shardpool_leaves_the_gil_disabled():
    # -W error: an extension that needs the GIL re-enables it with a RuntimeWarning.
    code = (
        "import sys, shardpool, shardpool.metrics\n"
        "pool = shardpool.ObjectPool(list)\n"
        "with pool.borrow(): pass\n"
        "assert not sys._is_gil_enabled(), 'importing shardpool enabled the GIL'\n"
    )
    done = python("-W", "error", "-c", code)
    assert done.returncode == 0, done.stderr


@free_threaded
def test_threaded_stress_tests_pass_without_the_gil():
    # PYTHON_GIL=0: the GIL stays off even if a test dependency (numpy,
    # hypothesis) were not declared free-threading safe.
    done = python(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(TESTS / "object_pool" / "test_object_pool_threads.py"),
        str(TESTS / "block_pool" / "test_block_pool_threads.py"),
        str(TESTS / "concurrency" / "test_asyncio.py"),
        str(TESTS / "metrics" / "test_metrics.py"),
        gil="0",
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
