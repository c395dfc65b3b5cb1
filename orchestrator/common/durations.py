"""Durations as operators type them: ``90s``, ``30m``, ``2h``, ``1d`` (or plain seconds).

Every duration and number of seconds a client sends is bounded: past
:data:`MAX_DURATION_S` it is refused, so no caller has to guard a date
computation (``now - timedelta(...)``) against overflow.
"""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"\s*(\d{1,12}(?:\.\d{1,9})?)\s*([smhd]?)\s*")
# Ten years: longer than any job, retention or look-back anyone means.
MAX_DURATION_S = 10 * 365 * 86400.0


def parse_duration(text: str, *, max_s: float = MAX_DURATION_S) -> float:
    """Seconds in ``text``; ValueError with the accepted forms, or past ``max_s``."""
    match = _PATTERN.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text[:40]!r} (use e.g. 90s, 30m, 2h, 1d)")
    return bounded_seconds(float(match[1]) * _UNITS[match[2] or "s"], max_s=max_s)


def bounded_seconds(value: object, *, max_s: float = MAX_DURATION_S) -> float:
    """``value`` as a number of seconds in ``[0, max_s]``; ValueError otherwise.

    Takes what a JSON body holds: an int or a float (never a bool, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    if not 0 <= value <= max_s:
        raise ValueError(f"must be between 0 and {max_s:.0f} seconds")
    return float(value)
