"""Typed reads of the fields of a client's JSON object or query string.

Each reader refuses a value of the wrong type with :class:`RejectedInput` naming
the field, so a handler never meets a list where it expects a string (an
unhashable ``in`` check, a database driver refusing to bind it, ...).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from schemas.errors import RejectedInput

# Longer than any id, name, duration or cursor the service hands out.
MAX_TEXT = 256
_TRUE = frozenset(("1", "true", "yes"))
_FALSE = frozenset(("", "0", "false", "no"))


def only_fields(payload: Mapping[str, Any], allowed: Collection[str]) -> None:
    """Refuse fields the operation does not know (a typo must not widen a bulk operation)."""
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise RejectedInput(f"unknown field(s): {shown}; known: {', '.join(sorted(allowed))}")


def optional_text(payload: Mapping[str, Any], name: str, *, max_len: int = MAX_TEXT) -> str | None:
    """A string field (absent or null: None)."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RejectedInput(f"{name} must be a string")
    if len(value) > max_len:
        raise RejectedInput(f"{name} is longer than {max_len} characters")
    return value


def optional_bool(payload: Mapping[str, Any], name: str) -> bool:
    """A boolean field (absent or null: false)."""
    value = payload.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RejectedInput(f"{name} must be true or false")
    return value


def optional_choice(payload: Mapping[str, Any], name: str, choices: Collection[str]) -> str | None:
    """A string field that must be one of ``choices`` (absent or null: None)."""
    value = optional_text(payload, name)
    if value is not None and value not in choices:
        names = ", ".join(sorted(choices))
        raise RejectedInput(f"unknown {name} {value[:40]!r}: must be one of: {names}")
    return value


def query_flag(params: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter: 1/true/yes or 0/false/no (absent: false)."""
    value = params.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RejectedInput(f"{name} must be true or false")


def query_int(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter clamped to ``[low, high]``; RejectedInput if not an integer."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 12):
        raise RejectedInput(f"{name} must be an integer")
    return max(low, min(int(text), high))
