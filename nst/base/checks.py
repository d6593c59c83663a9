"""How a setting's value is checked: by type first (a whole number, a
finite real, a name, a list), then by range, each failure a `ConfigError`
that names the setting and what it may be. `nst.base.config`'s dataclasses use
these; nothing here imports anything heavy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

#: Weights and rates above this would overflow the float32 arithmetic of a run.
MAX_REAL = 1e30


class ConfigError(ValueError):
    """A setting has a value outside its valid range."""


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """One of ``choices`` (names are strings: anything else is refused)."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def check_integer(name: str, value: Any, low: int, high: int) -> None:
    """A whole number in [low, high] (bools and floats such as NaN are refused)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low} to {high}, got {value}")


def check_real(
    name: str, value: Any, low: float, high: float = MAX_REAL, *, inclusive: bool = True, high_inclusive: bool = True
) -> None:
    """A finite real number within the bounds (NaN, infinities, bools and
    strings are refused; by default at most `MAX_REAL`)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if inclusive else value > low) and (value <= high if high_inclusive else value < high)
    if not ok:
        lower = f">= {low}" if inclusive else f"> {low}"
        upper = f" and {'<=' if high_inclusive else '<'} {high:g}"
        raise ConfigError(f"{name} must be a finite number {lower}{upper}, got {value!r}")


def check_sequence(name: str, value: Any) -> None:
    """A tuple of values (lists become tuples before this, in `Config.replace`)."""
    if not isinstance(value, tuple):
        raise ConfigError(f"{name} must be a list of values, got {value!r}")


#: A setting's check: called with its name and value, raises ConfigError.
Check = Callable[[str, Any], None]


def optional(check: Check) -> Check:
    """``check``, or None (the setting's "off" or "decided later")."""

    def checked(name: str, value: Any) -> None:
        if value is not None:
            check(name, value)

    return checked


def choice(choices: tuple[str, ...]) -> Check:
    """One of ``choices``."""
    return lambda name, value: check_choice(name, value, choices)


def integer(low: int, high: int) -> Check:
    """A whole number in [low, high]."""
    return lambda name, value: check_integer(name, value, low, high)


def real(low: float, high: float = MAX_REAL, *, inclusive: bool = True, high_inclusive: bool = True) -> Check:
    """A finite real number within the bounds (see `check_real`)."""
    return lambda name, value: check_real(name, value, low, high, inclusive=inclusive, high_inclusive=high_inclusive)


def each(check: Check) -> Check:
    """A tuple whose every value passes ``check``."""

    def checked(name: str, value: Any) -> None:
        check_sequence(name, value)
        for item in value:
            check(name, item)

    return checked


def boolean(name: str, value: Any) -> None:
    """True or False."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
