"""What users install: the wheel's files, the version, and the sdist's files and metadata.

The tests run against the installed wheel (scripts/check installs it), so a
file missing from the wheel fails here and in every test that imports it.
"""

from __future__ import annotations

import email
import email.message
import importlib.machinery
import importlib.metadata
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
from pathlib import Path

import pytest

import shardpool

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_SOURCE = ROOT / "python" / "shardpool"
CARGO_VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
EXTRAS = {"plot", "prometheus", "numpy", "docs"}


def package_files() -> set[str]:
    """The package's files in the source tree, as paths inside the wheel."""
    return {
        f"shardpool/{p.relative_to(PACKAGE_SOURCE).as_posix()}"
        for p in PACKAGE_SOURCE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".so", ".pyd"}
    }


def installed_files() -> set[str]:
    files = importlib.metadata.files("shardpool")
    assert files is not None, "the installed distribution has no RECORD"
    return {f.as_posix() for f in files}


def test_the_installed_package_is_imported_not_the_source_tree():
    imported = Path(shardpool.__file__).resolve()
    assert not imported.is_relative_to(ROOT / "python")
    dist = importlib.metadata.distribution("shardpool")
    assert imported == Path(str(dist.locate_file("shardpool/__init__.py"))).resolve()


def test_the_wheel_has_every_file_of_the_package():
    files = installed_files()
    missing = package_files() - files
    assert not missing, f"in python/shardpool but not in the wheel: {sorted(missing)}"
    for name in ("_core.pyi", "py.typed", "metrics.py", "__init__.py"):
        assert f"shardpool/{name}" in files


def test_the_wheel_has_the_extension_for_this_interpreter():
    extensions = {f for f in installed_files() if f.startswith("shardpool/_core.")} - {
        "shardpool/_core.pyi"
    }
    assert len(extensions) == 1, extensions
    (extension,) = extensions
    suffix = extension.removeprefix("shardpool/_core")
    assert suffix in importlib.machinery.EXTENSION_SUFFIXES
    # One stable-ABI wheel serves every GIL-enabled CPython from 3.11; a
    # free-threaded build has no stable ABI (docs/free-threading.md).
    if sys.platform != "win32":
        assert (suffix == ".abi3.so") == (not FREE_THREADED)
    assert Path(shardpool._core.__file__).name == f"_core{suffix}"


def test_the_wheel_carries_the_license():
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in installed_files())


def test_one_version_everywhere():
    assert shardpool.__version__ == CARGO_VERSION
    assert importlib.metadata.version("shardpool") == CARGO_VERSION
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(CARGO_VERSION)}\]", changelog, re.M), (
        f"CHANGELOG.md has no section for {CARGO_VERSION}"
    )


def test_installed_metadata_declares_the_extras():
    meta = importlib.metadata.metadata("shardpool")
    assert set(meta.get_all("Provides-Extra") or []) >= EXTRAS
    requires = importlib.metadata.requires("shardpool") or []
    assert any(r.startswith("prometheus-client") and "extra == 'prometheus'" in r for r in requires)
    assert meta["Requires-Python"] == ">=3.11"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which(
        "maturin"
    )
    if maturin is None:
        pytest.skip("maturin is not installed (pip install -r requirements-dev.txt)")
    out = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [maturin, "sdist", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("shardpool-*.tar.gz")
    return path


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        top = f"shardpool-{CARGO_VERSION}/"
        names = tar.getnames()
    assert all(n.startswith(top) for n in names)
    return {n.removeprefix(top) for n in names}


def pkg_info(sdist: Path) -> email.message.Message:
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"shardpool-{CARGO_VERSION}/PKG-INFO")
        assert member is not None
        return email.message_from_string(member.read().decode("utf-8"))


def test_the_sdist_has_everything_a_build_needs(sdist: Path):
    names = sdist_names(sdist)
    for required in (
        "Cargo.toml",
        "Cargo.lock",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "PKG-INFO",
    ):
        assert required in names, required
    rust = {p.relative_to(ROOT).as_posix() for p in (ROOT / "src").rglob("*.rs")}
    assert rust, "no Rust sources found"
    assert not rust - names, f"Rust sources missing from the sdist: {sorted(rust - names)}"
    python = {f"python/{name}" for name in package_files()}
    assert not python - names, f"package files missing from the sdist: {sorted(python - names)}"


def test_the_sdist_metadata_is_complete(sdist: Path):
    info = pkg_info(sdist)
    assert info["Name"] == "shardpool"
    assert info["Version"] == CARGO_VERSION
    assert info["Requires-Python"] == ">=3.11"
    assert info["License-Expression"] == "MIT"
    assert info["License-File"] == "LICENSE"
    assert info["Summary"]
    assert set(info.get_all("Provides-Extra") or []) >= EXTRAS
    requires = info.get_all("Requires-Dist") or []
    assert any(r.startswith("prometheus-client") and "extra == 'prometheus'" in r for r in requires)
    assert any(r.startswith("matplotlib") and "extra == 'plot'" in r for r in requires)
    assert any(r.startswith("numpy") and "extra == 'numpy'" in r for r in requires)
    # The long description is the README, rendered as Markdown.
    assert info["Description-Content-Type"].startswith("text/markdown")
    body = info.get_payload()
    assert isinstance(body, str)
    assert body.strip() == (ROOT / "README.md").read_text().strip()


def test_the_sdist_classifiers_are_valid(sdist: Path):
    from trove_classifiers import classifiers as valid

    listed = pkg_info(sdist).get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in listed
    assert "Typing :: Typed" in listed
    invalid = set(listed) - valid
    assert not invalid, f"not trove classifiers (PyPI refuses them): {sorted(invalid)}"
