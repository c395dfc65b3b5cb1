"""JSON helpers shared by every provider's payloads: strict decoding, readable fields.

Pure data, no I/O. Nothing here knows a provider. Decoding is strict (anything
odd raises :class:`~schemas.errors.RejectedPayload`, never another exception);
the field readers are lenient and give ``None`` for what they cannot use.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from schemas.errors import RejectedPayload

MAX_PAYLOAD_BYTES = 1024 * 1024
"""Largest provider payload we decode; the documented ones are a few hundred bytes."""

MAX_ID_CHARS = 512
MAX_ERROR_CHARS = 2000

_SURROGATE = re.compile("[\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def decode_json(body: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> object:
    """Decode a strict UTF-8 JSON document; raise :class:`RejectedPayload` on anything else.

    Rejects bodies over ``max_bytes``, invalid UTF-8, ``NaN``/``Infinity``, integers
    too long to convert, nesting deep enough to exhaust the recursion limit, and
    strings holding lone surrogates (they could not be written back as UTF-8).
    """
    if len(body) > max_bytes:
        raise RejectedPayload(f"payload is larger than {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
        value: object = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise RejectedPayload("payload is nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise RejectedPayload("payload is not valid UTF-8") from exc
    except ValueError as exc:  # JSONDecodeError, int digit limit, constants
        raise RejectedPayload("payload is not valid JSON") from exc
    # Strict UTF-8 cannot carry surrogates; only a \u escape can produce one.
    if "\\u" in text and _has_lone_surrogate(value):
        raise RejectedPayload("payload holds a lone UTF-16 surrogate")
    return value


def _has_lone_surrogate(value: object) -> bool:
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def readable_error(value: object) -> str | None:
    """Turn an ``error`` field of any JSON type into a short readable message.

    ``None`` and empty strings give ``None``; objects with a string ``message``
    give that message; other values are shown as compact JSON.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        for key in ("message", "error", "detail"):
            inner = value.get(key)
            if isinstance(inner, str) and inner.strip():
                value = inner
                break
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (ValueError, TypeError, RecursionError):
            text = f"<unreadable {type(value).__name__}>"
    text = _WHITESPACE.sub(" ", _SURROGATE.sub("\ufffd", text)).strip()
    if not text:
        return None
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


def body_excerpt(body: bytes) -> str | None:
    """The start of a body that is not the JSON expected, as readable text."""
    return readable_error(body[:500].decode("utf-8", errors="replace"))


def error_message(body: bytes, keys: Sequence[str]) -> str | None:
    """The message of an error answer, whatever its shape.

    The first of ``keys`` that reads as text when the body is a JSON object,
    else :func:`body_excerpt`; ``None`` when there is nothing to read.
    """
    try:
        decoded = decode_json(body)
    except RejectedPayload:
        decoded = None
    if isinstance(decoded, dict):
        for key in keys:
            text = readable_error(decoded.get(key))
            if text is not None:
                return text
    return body_excerpt(body)


def amount(value: object) -> float | None:
    """A finite, non-negative number, or ``None`` for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def stripped(value: object) -> str | None:
    """A string that is not blank, stripped; ``None`` for anything else."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def required_id(value: object, name: str = "id") -> str:
    """An identifier field: a non-empty string of at most :data:`MAX_ID_CHARS`."""
    if not isinstance(value, str) or not value.strip():
        raise RejectedPayload(f"'{name}' must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise RejectedPayload(f"'{name}' is longer than {MAX_ID_CHARS} characters")
    return value


def job_payload(obj: object) -> tuple[dict[str, Any], str, str]:
    """``(obj, id, status)`` of a job payload: an object with an ``id`` and a string ``status``.

    ``id`` is read by :func:`required_id`; anything else raises :class:`RejectedPayload`.
    """
    if not isinstance(obj, dict):
        raise RejectedPayload("payload must be a JSON object")
    job_id = required_id(obj.get("id"))
    status = obj.get("status")
    if not isinstance(status, str):
        raise RejectedPayload("'status' must be a string")
    return obj, job_id, status


def json_number(value: float) -> float | int:
    """``value`` as JSON should carry it: an integral float as an integer (``2.0`` -> ``2``)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
