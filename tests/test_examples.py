"""Every script in examples/ runs to completion (scenario examples in their quick mode)."""

import subprocess
import sys
from pathlib import Path

import pytest

# Files starting with "_" are helpers of the examples, not examples.
EXAMPLES = sorted(
    p
    for p in (Path(__file__).resolve().parent.parent / "examples").glob("*.py")
    if not p.name.startswith("_")
)


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    quick = ["--quick"] if "--quick" in script.read_text() else []
    done = subprocess.run(
        [sys.executable, str(script), *quick], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
