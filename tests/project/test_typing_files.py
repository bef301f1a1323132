"""The files of inferred-type assertions in tests/typing also run, against the
installed package: what they claim about types holds for real objects."""

import subprocess
import sys
from pathlib import Path

from helpers import TESTS

TYPING = TESTS / "typing"


def run(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_check_types_runs() -> None:
    run(TYPING / "check_types.py")


def test_check_async_runs() -> None:
    run(TYPING / "check_async.py")
