"""Fixtures shared by the Python tests. Plain helpers (functions, classes,
constants) are in helpers.py; this file also puts ``tests/`` on ``sys.path``
(pytest's default import mode), so that every test file can import them."""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Iterator

import pytest

from helpers import shardpool_log, switch_interval


@pytest.fixture
def default_sigint():
    """Ctrl-C raises KeyboardInterrupt during the test, whatever the runner
    set: for the hooks whose KeyboardInterrupt the pool raises again as
    Ctrl-C is (in the main thread, at its next check)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def unraisable(monkeypatch):
    """Collects what reaches ``sys.unraisablehook`` during the test."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


@pytest.fixture
def pool_log():
    """Collects what the ``shardpool`` logger records during the test."""
    with shardpool_log() as records:
        yield records


@pytest.fixture
def fast_switching():
    """Threads switch as often as the interpreter can, to interleave more
    (a reader runs in the middle of another thread's work if anything lets it)."""
    with switch_interval(1e-6):
        yield


@pytest.fixture
def no_gc() -> Iterator[None]:
    """The garbage collector off for the test: what its reference count does
    not free is not freed (a pool freed at once is freed by its count)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
