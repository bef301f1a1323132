"""Shared fixtures for the ObjectPool tests."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def unraisable(monkeypatch):
    """Collects what reaches ``sys.unraisablehook`` during the test."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen
