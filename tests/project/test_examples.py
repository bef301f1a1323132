"""Every script in examples/ runs to completion.

The scenario examples run in tests/bench/test_scenarios.py, every variant in its
``--quick`` form; the others run here as a reader would run them.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

# Files starting with "_" are helpers of the examples, not examples.
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
SCENARIO_EXAMPLES = {
    "asyncio_service.py",
    "buffer_operations.py",
    "gc_pressure.py",
    "http_server.py",
    "json_processing.py",
    "object_creation.py",
}
OTHERS = [p for p in EXAMPLES if p.name not in SCENARIO_EXAMPLES]


def test_every_example_is_run_by_a_test() -> None:
    scenarios = {p.name for p in EXAMPLES if "--quick" in p.read_text()}
    assert scenarios == SCENARIO_EXAMPLES, "a scenario example is missing from test_scenarios.py"
    assert OTHERS


@pytest.mark.parametrize("script", OTHERS, ids=[p.name for p in OTHERS])
def test_example_runs(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize("script", sorted(SCENARIO_EXAMPLES))
def test_scenario_example_help(script: str) -> None:
    """``--help`` shows the example's first docstring line and its variants."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--variant" in done.stdout
    assert "unpooled" in done.stdout
    assert "pooled" in done.stdout
    assert "--quick" in done.stdout
