"""What users install: the wheel's files, the version, the extension's linkage,
the sdist's files and metadata, and the pinned development tools.

The tests run against the installed wheel (scripts/check installs it), so a
file missing from the wheel fails here and in every test that imports it.
"""

from __future__ import annotations

import email
import email.message
import importlib.machinery
import importlib.metadata
import platform
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

from helpers import ROOT

PACKAGE_SOURCE = ROOT / "python" / "shardpool"
CARGO_VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What users may install beside the package; the developers' sets are
# dependency groups (PEP 735), which are never published.
EXTRAS = {"plot", "prometheus", "numpy", "bench"}
DEV_ONLY = {"test", "lint", "docs", "build", "dev"}
# Where the package index and `pip show` send people. The owner is a
# placeholder until the project has a home (pyproject.toml says so).
REPOSITORY = "https://github.com/shardpool/shardpool"
DOCS_SITE = "https://shardpool.github.io/shardpool/"
PROJECT_URLS = {
    "Homepage": REPOSITORY,
    "Documentation": DOCS_SITE,
    "Changelog": f"{REPOSITORY}/blob/main/CHANGELOG.md",
    "Issues": f"{REPOSITORY}/issues",
    "Source": REPOSITORY,
}


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


def project_urls(meta: email.message.Message) -> dict[str, str]:
    urls = [entry.split(",", 1) for entry in meta.get_all("Project-URL") or []]
    return {label.strip(): url.strip() for label, url in urls}


def test_installed_metadata_declares_the_extras_and_no_developer_sets():
    meta = importlib.metadata.metadata("shardpool")
    extras = set(meta.get_all("Provides-Extra") or [])
    assert extras == EXTRAS
    assert not extras & DEV_ONLY
    assert set(PYPROJECT["dependency-groups"]) == DEV_ONLY
    requires = importlib.metadata.requires("shardpool") or []
    assert any(r.startswith("prometheus-client") and "extra == 'prometheus'" in r for r in requires)
    assert meta["Requires-Python"] == ">=3.11"


def test_installed_metadata_links_home_docs_changelog_and_issues():
    # `pip show -v` lists them all; a current pip (26) also shows the Homepage
    # as Home-page, an older one (23.2) leaves Home-page empty.
    meta = importlib.metadata.metadata("shardpool")
    assert project_urls(meta) == PROJECT_URLS
    # PEP 639: pip 25.1 and later show License-Expression; older pip shows an
    # empty License line (the field it knows may not be set beside it), and
    # PyPI refuses License classifiers beside it. The text is in the wheel.
    assert meta["License-Expression"] == "MIT"
    # `in`, not `meta["License"] is None`: 3.14's importlib.metadata warns
    # (DeprecationWarning) on a missing key read by subscription.
    assert "License" not in meta
    assert not [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]


ELF_LINUX_GLIBC = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="checks the ELF extension of a glibc Linux wheel",
)


def extension_elf() -> tuple[set[str], dict[str, str], set[str]]:
    """The extension's DT_NEEDED libraries, its dynamic _Unwind_* symbols
    (name: section index) and the names of the symbols it imports."""
    elffile = pytest.importorskip("elftools.elf.elffile")
    with Path(shardpool._core.__file__).open("rb") as f:
        elf = elffile.ELFFile(f)
        dynamic = elf.get_section_by_name(".dynamic")
        needed = {tag.needed for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"}
        symbols = list(elf.get_section_by_name(".dynsym").iter_symbols())
        unwind = {sym.name: sym["st_shndx"] for sym in symbols if sym.name.startswith("_Unwind_")}
        imported = {sym.name for sym in symbols if sym["st_shndx"] == "SHN_UNDEF"}
        return needed, unwind, imported


@ELF_LINUX_GLIBC
def test_the_extension_unwinds_with_the_systems_unwinder():
    # glibc's pthread_exit (CPython 3.11-3.13 call it in a daemon thread that
    # wakes after finalization) unwinds through the extension with libgcc_s.
    # A private copy of an unwinder linked in (zig bundles LLVM's) misreads
    # those frames: a segfault at exit (scripts/build-wheel explains the fix).
    needed, unwind, _ = extension_elf()
    assert "libgcc_s.so.1" in needed
    assert unwind, "no _Unwind_* symbol is imported: an unwinder is linked in"
    defined = sorted(name for name, section in unwind.items() if section != "SHN_UNDEF")
    assert not defined, f"the extension defines its own {defined}"


# CPython functions the extension calls where the interpreter has them, which
# not every interpreter it may load into has: CPython 3.14's. The abi3 wheel
# loads into 3.11-3.13 too, and a build without abi3 may target one of them
# with a GIL (`maturin build --no-default-features -i python3.11`); linked,
# they made that build fail at import (undefined symbol), so they are looked
# up at run time (`dlsym`) instead.
LOOKED_UP_AT_RUN_TIME = {
    "PyUnstable_Object_IsUniquelyReferenced",
    "PyUnstable_Object_IsUniqueReferencedTemporary",
}


@ELF_LINUX_GLIBC
def test_the_extension_links_no_function_of_cpython_3_14_only() -> None:
    _, _, imported = extension_elf()
    assert "PyObject_GetAttr" in imported, "read the extension's imported symbols"
    assert not imported & LOOKED_UP_AT_RUN_TIME


def git_tracked_files() -> list[str]:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    done = subprocess.run(
        [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        pytest.skip(f"not a git checkout: {done.stderr.strip()}")
    return [name for name in done.stdout.split("\0") if name and (ROOT / name).is_file()]


# Untracked, not ignored, and not part of a build: none may reach the sdist.
STRAYS = (
    "build/lib/shardpool/_core.abi3.so",
    "wheelhouse/shardpool-0.0.1-py3-none-any.whl",
    "venv-old/pyvenv.cfg",
    "notes/todo.md",
    "docs/draft.md",
    "src/notes.txt",
)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's tracked files, with untracked folders beside them."""
    copy = tmp_path_factory.mktemp("checkout")
    for name in git_tracked_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True, timeout=60)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True, timeout=60)
    for stray in STRAYS:
        (copy / stray).parent.mkdir(parents=True, exist_ok=True)
        (copy / stray).write_text("not part of the package\n")
    return copy


@pytest.fixture(scope="module")
def sdist(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which(
        "maturin"
    )
    if maturin is None:
        pytest.skip("maturin is not installed (pip install -r requirements-dev.txt)")
    out = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [maturin, "sdist", "--out", str(out)],
        cwd=checkout,
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


def test_the_sdist_holds_exactly_what_a_build_needs(sdist: Path, checkout: Path):
    # Cargo.toml's `include` whitelists the crate's files; maturin adds
    # pyproject.toml, PKG-INFO and the package. (scripts/check builds the
    # debug wheel from the sdist: it has everything a build needs.)
    names = sdist_names(sdist)
    tracked = git_tracked_files()
    expected = {"PKG-INFO", "pyproject.toml", "Cargo.toml", "Cargo.lock", "README.md", "LICENSE"}
    expected |= {n for n in tracked if n.startswith("src/") and n.endswith(".rs")}
    expected |= {n for n in tracked if n.startswith("python/shardpool/")}
    assert any(n.startswith("src/") for n in expected)
    assert {f"python/{name}" for name in package_files()} <= expected
    assert all((checkout / stray).is_file() for stray in STRAYS)
    assert names - expected == set(), "in the sdist but not needed to build"
    assert expected - names == set(), "needed to build but not in the sdist"


def test_the_sdist_metadata_is_complete(sdist: Path):
    info = pkg_info(sdist)
    assert info["Name"] == "shardpool"
    assert info["Version"] == CARGO_VERSION
    assert info["Requires-Python"] == ">=3.11"
    assert info["License-Expression"] == "MIT"
    assert info["License-File"] == "LICENSE"
    assert info["Summary"]
    assert project_urls(info) == PROJECT_URLS
    assert set(info.get_all("Provides-Extra") or []) == EXTRAS
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


def test_the_readme_links_work_off_site():
    # The README is the long description PyPI shows, where a relative link
    # (docs/index.md) leads nowhere: every link is absolute or in-page.
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    targets += re.findall(r"^\[[^\]]+\]:\s*(\S+)", readme, re.M)
    assert targets, "the README links nowhere"
    relative = [t for t in targets if not t.startswith(("https://", "#"))]
    assert not relative, f"relative links in the README: {relative}"
    for target in targets:
        url = target.split("#")[0]
        for tree in (f"{REPOSITORY}/blob/main/", f"{REPOSITORY}/tree/main/"):
            if url.startswith(tree):
                path = ROOT / url.removeprefix(tree)
                assert path.exists(), f"{target}: no {path.relative_to(ROOT)} in the repository"
        if url.startswith(DOCS_SITE):
            page = url.removeprefix(DOCS_SITE).strip("/")
            sources = [ROOT / "docs" / f"{page}.md", ROOT / "docs" / page / "index.md"]
            assert any(p.is_file() for p in sources), f"{target}: no page in docs/ makes it"


def dependency_group(name: str) -> list[str]:
    """A dependency group's requirements, its included groups' too (PEP 735)."""
    found: list[str] = []
    for entry in PYPROJECT["dependency-groups"][name]:
        found += dependency_group(entry["include-group"]) if isinstance(entry, dict) else [entry]
    return found


def pinned_tools() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"requirements-dev.txt: {line!r} is not a pin (name==version)"
        pins[canonical(match[1])] = match[2]
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_development_tool_is_pinned_within_its_group():
    # requirements-dev.txt is made from the `dev` group by scripts/lock; a
    # tool added to a group without re-pinning, or a pin outside the range a
    # group asks for, fails here.
    from packaging.requirements import Requirement

    pins = pinned_tools()
    wanted = [Requirement(r) for r in dependency_group("dev")]
    assert {canonical(r.name) for r in wanted} >= {"maturin", "pytest", "mypy", "ziglang"}
    for requirement in wanted:
        name = canonical(requirement.name)
        assert name in pins, f"{requirement} is in a dependency group but not pinned"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside {requirement}"
        )
    # The maturin the tests use is one that `pip install .` may pick.
    (backend,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert backend.specifier.contains(pins["maturin"])


def test_the_free_threaded_script_installs_the_test_group_and_maturin():
    # scripts/free-threaded reads its package list from pyproject.toml; when
    # the extras became dependency groups it read nothing and went on to a
    # build without maturin. It must list the whole `test` group.
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "free-threaded"), "--print-deps"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        check=True,
    )
    listed = done.stdout.splitlines()
    assert listed[0].startswith("maturin")
    assert listed[1:] == dependency_group("test")
