"""Argument normalisation for the hand-written constructors of the compiled classes.

Compiled code checks argument types strictly (a numpy integer is not an ``int``, a list is
not a ``tuple``); plain Python checks nothing. Constructors pass their arguments through
these, so both accept what a user would pass and store the same types. Compiled itself (a
call from compiled code into plain Python would cost more than the check).
"""

from __future__ import annotations

import operator
from typing import Any, SupportsFloat, SupportsIndex


def as_int(x: SupportsIndex) -> int:
    """``x`` as an exact int (numpy integers included); TypeError for a float or a string."""
    return x if type(x) is int else operator.index(x)


def as_opt_int(x: SupportsIndex | None) -> int | None:
    return None if x is None else as_int(x)


def as_float(x: SupportsFloat) -> float:
    return x if type(x) is float else float(x)


def as_tuple(x: Any) -> tuple[Any, ...]:
    return x if type(x) is tuple else tuple(x)


def as_list(x: Any) -> list[Any]:
    return x if type(x) is list else list(x)
