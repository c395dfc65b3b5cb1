"""Fault settings for the sandbox providers.

Every fault is a float: a probability in ``0..1`` unless its name ends with
``_s``, in which case it is a number of seconds ``>= 0``. One option,
``result_base_url``, is a string: when set, result URLs point at that base
(scheme, host and optional path prefix) instead of the sandbox itself. One,
``quota_per_day``, is a whole-number count (Artnex's daily quota; 0 = none).

Settings come from a command-line string (``Faults.parse``) or a JSON object
(``Faults.update``); both validate every entry before applying any of them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlsplit

STRING_OPTIONS = frozenset({"result_base_url"})
# Whole numbers >= 0 (a count, not a probability): 0 means "no limit".
COUNT_OPTIONS = frozenset({"quota_per_day"})


def _is_seconds(name: str) -> bool:
    return name.endswith("_s")


@dataclass(slots=True)
class Faults:
    """Mutable fault settings shared by every sandbox provider."""

    drop_callback: float = 0.0
    duplicate_callback: float = 0.0
    early_callback: float = 0.0
    delay_callback_s: float = 0.0
    submit_429: float = 0.0
    submit_500: float = 0.0
    status_429: float = 0.0
    status_500: float = 0.0
    submit_timeout: float = 0.0
    expire_result: float = 0.0
    corrupt_result: float = 0.0
    # Fotor quirks (see orchestrator/sandbox/fotor.py); progress_callbacks is on by default.
    error_in_200: float = 0.0
    no_credit: float = 0.0
    s3_result: float = 0.0
    nsfw: float = 0.0
    empty_result: float = 0.0
    progress_callbacks: float = 1.0
    # Photio and Artnex quirks (see orchestrator/sandbox/photio.py and artnex.py).
    status_in_body: float = 0.0
    data_uri_body: float = 0.0
    quota_per_day: int = 0
    processing_s: float = 0.0
    retry_after_s: float = 1.0
    submit_timeout_s: float = 30.0
    result_base_url: str = ""

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            setattr(self, name, _validate(name, value))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def probability_names(cls) -> tuple[str, ...]:
        return tuple(
            n
            for n in cls.names()
            if n not in STRING_OPTIONS and n not in COUNT_OPTIONS and not _is_seconds(n)
        )

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Build from ``"drop_callback=0.5,processing_s=2"`` (empty text: defaults)."""
        faults = cls()
        faults.update(_split_assignments(text))
        return faults

    def update(self, values: Mapping[str, Any]) -> None:
        """Apply a JSON-like mapping; nothing changes if any entry is invalid."""
        if not isinstance(values, Mapping):
            raise ValueError("faults must be a JSON object of name -> value")
        checked = {name: _validate(name, value) for name, value in values.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def copy(self) -> Faults:
        return Faults(**self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def roll(self, name: str, rng: random.Random) -> bool:
        """True with the probability configured for ``name``."""
        if name not in self.probability_names():
            raise ValueError(f"{name!r} is not a probability fault")
        p: float = getattr(self, name)
        if p <= 0.0:
            return False
        return rng.random() < p


def _split_assignments(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fault {item!r} must look like name=value")
        out[name.strip()] = value.strip()
    return out


def _validate(name: Any, value: Any) -> Any:
    known = Faults.names()
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(known)}")
    if name in STRING_OPTIONS:
        return _validate_base_url(name, value)
    number = _to_float(name, value)
    if name in COUNT_OPTIONS:
        if number < 0 or not number.is_integer():
            raise ValueError(f"fault {name!r} is a count and must be a whole number >= 0")
        return int(number)
    if _is_seconds(name):
        if number < 0:
            raise ValueError(f"fault {name!r} is a number of seconds and must be >= 0")
    elif not 0.0 <= number <= 1.0:
        raise ValueError(f"fault {name!r} is a probability and must be between 0 and 1")
    return number


def _to_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"fault {name!r} must be a number, not a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"fault {name!r} must be a number, got {value!r}") from None
    else:
        raise ValueError(f"fault {name!r} must be a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"fault {name!r} must be a finite number")
    return number


def _validate_base_url(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"option {name!r} must be a string")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"option {name!r} must be an absolute http(s) URL or empty")
    if parts.query or parts.fragment:
        raise ValueError(f"option {name!r} must not have a query or fragment")
    return value.rstrip("/")
