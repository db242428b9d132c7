"""Where a data file named by a relative path is looked for.

A path typed on the command line (``--trace``, ``--bandwidth-trace``) is looked for in the
working directory first; a path written in a scenario or profile YAML, in that file's folder
first (a shipped scenario has none). Then, in order: ``$PRFAAS_TRACES``, the working
directory, the project's root, and the ``shared/traces`` and ``shared`` folders beside each
of those two (where the public traces live). The first that exists wins; an error lists
every place looked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prfaas_gym.errors import PrfaasInputError


def search_roots(base_dir: Path | None = None, typed: bool = False) -> list[Path]:
    """The folders a relative path is looked for in, in order (see the module docstring):
    ``typed`` for a path from the command line, else ``base_dir`` is the folder of the
    file that named it (None: no such folder)."""
    roots = [Path.cwd()] if typed else [base_dir] if base_dir is not None else []
    if os.environ.get("PRFAAS_TRACES"):
        roots.append(Path(os.environ["PRFAAS_TRACES"]))
    here = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), here):
        roots += [base, base.parent / "shared" / "traces", base.parent / "shared"]
    return list(dict.fromkeys(roots))


def resolve_path(path: str | Path, base_dir: Path | None, where: str,
                 typed: bool = False) -> Path:
    """The file (or folder) ``path`` names: itself when absolute, else the first of
    :func:`search_roots` ``(base_dir, typed)`` holding it. :class:`PrfaasInputError` at
    ``where``, listing the places looked, when none does."""
    p = Path(path).expanduser()
    if p.is_absolute():
        if p.exists():
            return p
        raise PrfaasInputError(f"file not found: {p}", where)
    roots = search_roots(base_dir, typed)
    for root in roots:
        if (root / p).exists():
            return root / p
    raise PrfaasInputError(f"file not found: {path} (looked in {', '.join(map(str, roots))})",
                           where)


def same_file(a: Any, b: Any) -> bool:
    """Whether paths ``a`` and ``b`` name one existing file or folder (a symlink and its
    target, a relative and an absolute spelling); False where either is missing or is no
    path at all."""
    try:
        return os.path.samefile(a, b)
    except (OSError, TypeError, ValueError):
        return False

