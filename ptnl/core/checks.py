"""Argument checks shared by every layer, so that each rule and its message exist once."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence

import numpy as np


def is_int(value) -> bool:
    """An integer (Python or numpy), and not a bool: ``True`` is an int to Python, not to us."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value) -> bool:
    """A finite or infinite real number (int or float, numpy included), and not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def is_fraction(value) -> bool:
    """A number in [0, 1): a noise rate."""
    return is_number(value) and not math.isnan(value) and 0 <= value < 1


def choice(name: str, value, allowed: Sequence[str]) -> None:
    """A ValueError naming the closest allowed value if ``value`` is not one of ``allowed``."""
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {name} {value!r}{hint}; choose one of {', '.join(allowed)}")


def as_list(values, name: str) -> list:
    """A notebook's list parameter as a non-empty list (a bare string or number is a mistake)."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list (e.g. [{values!r}]), got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    return values
