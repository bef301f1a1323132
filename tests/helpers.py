"""Helpers shared by the Python tests, imported as ``from helpers import ...``
(``tests/`` is on ``sys.path`` through its ``conftest.py``). Fixtures live in
``conftest.py``; plain functions and constants live here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository's top folder."""

TESTS = ROOT / "tests"
