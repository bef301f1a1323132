"""`import shardpool` stays cheap: asyncio, typing and the rest load on first use."""

import subprocess
import sys

import pytest

import shardpool


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_import_loads_only_the_package_and_its_extension() -> None:
    # asyncio alone costs several times the rest of the package (see
    # docs/performance.md); typing (Protocol) most of what is left.
    new = _run(
        "import sys\n"
        "before = set(sys.modules)\n"
        "import shardpool\n"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    ).split()
    assert new == ["shardpool", "shardpool._core"]


def test_async_borrow_loads_asyncio_on_first_use() -> None:
    out = _run(
        "import sys\n"
        "from shardpool import AsyncBorrow\n"
        "import shardpool._aio\n"
        "print(AsyncBorrow is shardpool._aio.AsyncBorrow, 'asyncio' in sys.modules)"
    )
    assert out == "True True"


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("AsyncBorrow", "shardpool._aio"),
        ("Resetter", "shardpool._protocols"),
        ("trim_on_gc", "shardpool._gc"),
    ],
)
def test_lazy_names_are_the_real_objects(name: str, module: str) -> None:
    value = getattr(shardpool, name)
    assert value is getattr(sys.modules[module], name)
    assert value.__module__ == module


def test_every_public_name_is_listed_and_importable() -> None:
    assert set(shardpool.__all__) <= set(dir(shardpool))
    namespace: dict[str, object] = {}
    exec("from shardpool import *", namespace)
    assert set(shardpool.__all__) <= set(namespace)


def test_an_unknown_name_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="'no_such_name'"):
        _ = shardpool.no_such_name  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match="no_such_name"):
        exec("from shardpool import no_such_name", {})
