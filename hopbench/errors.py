"""Errors that reach the user: one line, naming the config key and what is allowed.

The checks below are what every constructor uses for its parameters, so a value is checked once, where
the object it configures is built, with the same wording everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["ConfigError", "choice", "flag", "number"]


class ConfigError(ValueError):
    """Bad user input, detected before any compute.

    ``str(error)`` is one line: ``<key>=<value>: <what is wrong> (allowed: ...)``.
    """

    def __init__(self, key: str, value: object, message: str, allowed: object | None = None) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        text = f"{key}={value!r}: {message}"
        if allowed is not None:
            if isinstance(allowed, list | tuple | set | frozenset):
                allowed = ", ".join(str(a) for a in sorted(allowed, key=str))
            text += f" (allowed: {allowed})"
        super().__init__(" ".join(text.split()))


def _bounds(above: float | None, at_least: float | None, below: float | None, at_most: float | None) -> str:
    low = f"> {above:g}" if above is not None else (f"≥ {at_least:g}" if at_least is not None else "")
    high = f"< {below:g}" if below is not None else (f"≤ {at_most:g}" if at_most is not None else "")
    if low and high:
        left = "(" if above is not None else "["
        right = ")" if below is not None else "]"
        lo = above if above is not None else at_least
        hi = below if below is not None else at_most
        return f"in {left}{lo:g}, {hi:g}{right}"
    return low or high


def number(key: str, value: object, *, above: float | None = None, at_least: float | None = None,
           below: float | None = None, at_most: float | None = None, integer: bool = False) -> float:
    """``value`` as a finite number (an int with ``integer``) within the given bounds, else a ConfigError."""
    kind = "an integer" if integer else "a number"
    bounds = _bounds(above, at_least, below, at_most)
    wanted = f"must be {kind}" + (f" {bounds}" if bounds else "")
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(key, value, wanted)
    if ((above is not None and not value > above) or (at_least is not None and not value >= at_least)
            or (below is not None and not value < below) or (at_most is not None and not value <= at_most)):
        raise ConfigError(key, value, wanted)
    return value if integer else float(value)


def choice(key: str, value: object, allowed: Iterable[object]) -> object:
    """``value`` if it is one of ``allowed``, else a ConfigError listing them."""
    options = list(allowed)
    if value not in options:
        raise ConfigError(key, value, "unknown option", allowed=options)
    return value


def flag(key: str, value: object) -> bool:
    """``value`` if it is a boolean (true/false), else a ConfigError (``maybe`` is not a boolean)."""
    if not isinstance(value, bool):
        raise ConfigError(key, value, "must be a boolean", allowed=["true", "false"])
    return value
