"""The documentation site builds without a warning, and every Python example
in docs/ runs, each in a fresh interpreter with warnings as errors.

An example that needs something optional or not yet merged is preceded by
``<!-- needs: NAME -->``, where NAME is a module (``pond``) or a dotted
attribute (``shardpool.ObjectPool.aget``); it is skipped, saying why, where
NAME does not exist. An example that imports a test dependency which did not
install in this interpreter (psycopg has no wheel for free-threaded CPython)
is skipped too, naming it; any other missing import fails the example.
"""

from __future__ import annotations

import ast
import html
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NEEDS = re.compile(r"<!--\s*needs:\s*([\w.]+)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    code: str
    needs: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(DOCS).as_posix()}:{self.line}"


def examples() -> list[Example]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            needs = NEEDS.search(before)
            line = text.count("\n", 0, match.start()) + 1
            found.append(Example(page, line, match.group(1), needs and needs.group(1)))
    return found


EXAMPLES = examples()


def declared_test_modules() -> set[str]:
    """The import names of the test dependency group (``psycopg[binary]>=3.2``:
    ``psycopg``), as ``scripts/free-threaded`` maps them."""
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    names = (re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0] for d in groups["test"])
    return {name.lower().replace("-", "_") for name in names}


def missing_test_dependencies(code: str) -> list[str]:
    """The modules `code` imports that are test dependencies not installed here."""
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    declared = declared_test_modules()
    return sorted(
        name for name in imported if name in declared and importlib.util.find_spec(name) is None
    )


def exists(name: str) -> bool:
    """Whether a module, or an attribute of one, can be had."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_guide_has_examples() -> None:
    pages = {e.page.relative_to(DOCS).as_posix() for e in EXAMPLES}
    for page in (
        "index.md",
        "guide/choosing.md",
        "guide/sizing.md",
        "guide/resetting.md",
        "guide/limits.md",
        "guide/blocks-and-buffers.md",
        "guide/concurrency.md",
        "guide/metrics.md",
        "guide/migrating.md",
    ):
        assert page in pages, f"{page} has no Python example"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_runs(example: Example, tmp_path: Path) -> None:
    if example.needs and not exists(example.needs):
        pytest.skip(f"needs {example.needs}, which is not available")
    if missing := missing_test_dependencies(example.code):
        pytest.skip(f"imports {', '.join(missing)}: test dependencies not installed here")
    script = tmp_path / f"{example.page.stem}_{example.line}.py"
    script.write_text(example.code)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"{example.id} failed:\n{done.stderr}"


def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    # Material's notice about its future is not a warning about these docs.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    page = (tmp_path / "site" / "reference" / "index.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    # Signatures come from the stubs, docstrings from the compiled module.
    signature = r"get\(\s*timeout: SupportsFloat \| SupportsIndex \| None = \.\.\.,?\s*\) -> _T"
    assert re.search(signature, text)
    assert "Get an object: an idle one if any" in text
    assert "Zero-argument callable that makes a new object." in text
