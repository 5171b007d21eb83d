"""Reading a measured curve: where a fraction falls through a level (capacity, critical load)."""

from __future__ import annotations

__all__ = ["alpha_crossing"]


def alpha_crossing(loads: list[float], values: list[float], level: float) -> tuple[float | None, str | None]:
    """The load where ``values`` first falls below ``level``, linearly interpolated (None with a note when
    it is below the first or above the last load)."""
    pairs = sorted(zip(loads, values, strict=True))
    for i, (alpha, value) in enumerate(pairs):
        if value < level:
            if i == 0:
                return None, f"below the first load {alpha:g}"
            a0, v0 = pairs[i - 1]
            return a0 + (v0 - level) / (v0 - value) * (alpha - a0), None
    return None, f"above the last load {pairs[-1][0]:g}"
