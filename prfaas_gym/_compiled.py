"""Which modules run compiled, and the switch that runs them as plain Python.

``setup.py`` compiles the simulator's hot modules (``COMPILED`` there: the event loop, link,
decode, prefix caches, TTFT estimate, featurizer, actions, contract, profile, request,
argument coercion, block hashes and the env's episode) with mypyc. Each compiled extension
sits beside its ``.py`` source and shadows it on import; both are built from the same
source and give bit-identical results
(``tests/test_compiled.py``). Pickles are interchangeable between the two: stateful classes
pickle their attributes as a dict (:func:`object_state`), frozen dataclasses their
constructor arguments (:func:`pickle_by_constructor`).

``PRFAAS_PURE_PYTHON=1`` in the environment, read when :mod:`prfaas_gym` is first imported,
loads the ``.py`` sources instead: for a debugger, coverage, or to check an edit without
rebuilding. The same variable at install time skips compilation altogether.
"""

from __future__ import annotations

import copyreg
import dataclasses
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PURE_PYTHON = os.environ.get("PRFAAS_PURE_PYTHON", "") not in ("", "0")
_STALE_SLACK_S = 2.0  # installers write a module's files a moment apart


def _extension_files() -> dict[str, Path]:
    """Module name -> compiled extension file, for every extension in the package."""
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    out: dict[str, Path] = {}
    for f in PACKAGE_DIR.iterdir():
        suffix = next((s for s in suffixes if f.name.endswith(s)), None)
        if suffix is not None:
            out[f.name[: -len(suffix)]] = f
    return out


def _by_fields(obj: object) -> tuple[type, tuple[object, ...]]:
    return type(obj), tuple(getattr(obj, f.name) for f in dataclasses.fields(obj)  # type: ignore[arg-type]
                            if f.init)


def pickle_by_constructor(*classes: type) -> None:
    """Pickle and copy these frozen dataclasses by calling their constructor with their init
    fields. A compiled frozen dataclass refuses the ``setattr`` that default unpickling uses;
    this works the same compiled or not."""
    for cls in classes:
        copyreg.pickle(cls, _by_fields)  # type: ignore[arg-type]


def _attribute_names(obj: object) -> list[str]:
    names = getattr(type(obj), "__mypyc_attrs__", None)  # compiled: the native layout
    if names is None:
        names = [n for k in type(obj).__mro__ for n in getattr(k, "__slots__", ())]
    else:
        names = list(names)
    # a Python subclass of a compiled class keeps its own attributes in a __dict__
    names += [n for n in getattr(obj, "__dict__", ()) if n not in names]
    return [n for n in names if not n.startswith("__")]


def object_state(obj: object) -> dict[str, object]:
    """``obj``'s attributes as a dict, the same whether its class is compiled (a native
    struct) or not (``__dict__`` or ``__slots__``): what ``__getstate__`` returns, so that a
    pickle made in either mode loads in the other."""
    state = {}
    for n in _attribute_names(obj):
        try:
            state[n] = getattr(obj, n)
        except AttributeError:  # never assigned
            pass
    return state


def restore_state(obj: object, state: dict[str, object]) -> None:
    """The ``__setstate__`` counterpart of :func:`object_state`."""
    for n, v in state.items():
        object.__setattr__(obj, n, v)


def compiled_modules() -> list[str]:
    """Names of the ``prfaas_gym`` modules that load from compiled extensions (empty when
    nothing was compiled or ``PRFAAS_PURE_PYTHON`` is set)."""
    return [] if PURE_PYTHON else sorted(_extension_files())


def describe() -> str:
    """One line for benchmark output: what code is being measured."""
    mods = compiled_modules()
    return f"compiled with mypyc: {', '.join(mods)}" if mods else "pure Python"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Loads ``prfaas_gym.<name>`` from ``<name>.py`` even where an extension exists."""

    def find_spec(self, fullname: str, path: object, target: object = None):  # noqa: ANN201
        pkg, _, name = fullname.partition(".")
        if pkg != "prfaas_gym" or not name or "." in name:
            return None
        src = PACKAGE_DIR / f"{name}.py"
        return importlib.util.spec_from_file_location(fullname, src) if src.is_file() else None


def install() -> None:
    """Called once by ``prfaas_gym/__init__``: apply the switch, warn about stale builds."""
    if PURE_PYTHON:
        if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
            sys.meta_path.insert(0, _SourceFirst())
        return
    for src, ext in stale_extensions(_extension_files()):
        warnings.warn(
            f"{src} is newer than its compiled extension {ext.name}, which still runs: "
            "rebuild with `pip install -e .` (or `make install`), or set "
            "PRFAAS_PURE_PYTHON=1 to run the source", stacklevel=2)


def stale_extensions(extensions: dict[str, Path]) -> list[tuple[Path, Path]]:
    """(source, extension) pairs whose source was edited after the extension was built."""
    out = []
    for name, ext in sorted(extensions.items()):
        src = ext.parent / f"{name}.py"
        if src.is_file() and src.stat().st_mtime > ext.stat().st_mtime + _STALE_SLACK_S:
            out.append((src, ext))
    return out
