"""A griffe extension for the docs: docstrings of the compiled module.

griffe reads ``shardpool._core`` from its stubs (``_core.pyi``), which carry
the precise signatures but not the documentation: that lives in the Rust
sources (``///`` comments) and reaches Python as the ``__doc__`` of the
compiled classes, methods and properties. This extension imports the
installed module and gives every object read from the stubs its runtime
docstring.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe

MODULE = "shardpool._core"


def _runtime(path: str) -> object | None:
    """The runtime object at a dotted path inside ``MODULE``, or None."""
    obj: object = importlib.import_module(MODULE)
    for part in path.removeprefix(MODULE).strip(".").split("."):
        if not part:
            continue
        # Through the class __dict__: a property's getset descriptor, not its
        # value, holds the docstring.
        namespace = getattr(obj, "__dict__", {})
        if part in namespace:
            obj = namespace[part]
        elif hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            return None
    return obj


_ARGS_HEADINGS = {"Args:", "Arguments:", "Parameters:", "Params:"}


def _expand_shared_entries(doc: str) -> str:
    """One entry per name in the Args sections.

    The Rust docs let several parameters share a description
    (``reset, validate, destroy: as for ObjectPool``), which Google style
    does not allow: griffe would warn and drop the entry.
    """
    out: list[str] = []
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line.strip() not in _ARGS_HEADINGS:
            continue
        while i < len(lines) and lines[i].strip():
            entry_indent = len(lines[i]) - len(lines[i].lstrip())
            entry = [lines[i]]
            i += 1
            while i < len(lines) and len(lines[i]) - len(lines[i].lstrip()) > entry_indent:
                entry.append(lines[i])
                i += 1
            text = " ".join(part.strip() for part in entry)
            names, colon, description = text.partition(":")
            if colon and "," in names:
                for name in filter(None, (n.strip() for n in names.split(","))):
                    out.append(f"{' ' * entry_indent}{name}: {description.strip()}")
            else:
                out.extend(entry)
    return "\n".join(out)


class RuntimeDocstrings(griffe.Extension):
    """Sets the docstrings of ``shardpool._core`` objects from the installed module."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path != MODULE.split(".")[0]:
            return
        core = pkg.members.get("_core")
        if isinstance(core, griffe.Module):
            self._loader = loader
            self._document(core, set())

    def _document(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        # Dunders document the protocol (object.__init__: "Initialize
        # self..."), not the pool; the stubs' signature says enough.
        if obj.name.startswith("__") and obj.name.endswith("__"):
            return
        runtime = _runtime(obj.path)
        # Only what documents itself: a constant's __doc__ is its type's.
        documented = inspect.isclass(runtime) or inspect.isroutine(runtime)
        documented |= inspect.isdatadescriptor(runtime) or inspect.ismodule(runtime)
        doc = getattr(runtime, "__doc__", None) if documented else None
        if isinstance(doc, str) and doc.strip() and doc is not object.__doc__:
            obj.docstring = griffe.Docstring(
                _expand_shared_entries(inspect.cleandoc(doc)),
                parent=obj,
                parser=self._loader.docstring_parser,
                parser_options=self._loader.docstring_options,
            )
        for member in obj.members.values():
            # The compiled classes say they belong to `shardpool`, so griffe
            # files them as aliases; their targets are the stubs' objects.
            if isinstance(member, griffe.Alias):
                try:
                    target = member.final_target
                except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                    continue
            else:
                target = member
            if target.path.startswith(MODULE + "."):
                self._document(target, seen)
