"""Upsampler payloads: the submit answer and the result (webhook body = status answer).

Pure data, no I/O. Parsing is lenient about what it does not need (unknown keys,
odd optional fields) and strict about what it does: anything it cannot use raises
:class:`~schemas.errors.RejectedPayload`, never another exception.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import RejectedPayload

MAX_PAYLOAD_BYTES = 1024 * 1024
"""Largest provider payload we decode; the documented ones are a few hundred bytes."""

MAX_ID_CHARS = 512
MAX_ERROR_CHARS = 2000

_SURROGATE = re.compile("[\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class UpsamplerResult:
    """A final (or intermediate) job result, from a webhook or ``GET /status/{id}``."""

    id: str
    status: str
    image_url: str | None
    compressed_image_url: str | None
    credit_cost: float | None
    error: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class UpsamplerSubmitAnswer:
    """The synchronous answer to a POST: ``{id, status, creditCost}`` or ``{status, error}``."""

    id: str | None
    status: str | None
    credit_cost: float | None
    error: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


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


def _number(value: object) -> float | None:
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


def _url(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _job_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RejectedPayload("'id' must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise RejectedPayload(f"'id' is longer than {MAX_ID_CHARS} characters")
    return value


def parse_upsampler_result(obj: object) -> UpsamplerResult:
    """Read a webhook body or a ``GET /status/{id}`` answer (already JSON-decoded).

    Raises :class:`RejectedPayload` when ``obj`` is not an object, ``id`` is not a
    non-empty string or ``status`` is not a string. Odd optional fields are dropped:
    a non-string URL becomes ``None``, a non-numeric ``creditCost`` is ignored and a
    non-string ``error`` is rendered readable.
    """
    if not isinstance(obj, dict):
        raise RejectedPayload("payload must be a JSON object")
    job_id = _job_id(obj.get("id"))
    status = obj.get("status")
    if not isinstance(status, str):
        raise RejectedPayload("'status' must be a string")
    return UpsamplerResult(
        id=job_id,
        status=status,
        image_url=_url(obj.get("imageUrl")),
        compressed_image_url=_url(obj.get("compressedImageUrl")),
        credit_cost=_number(obj.get("creditCost")),
        error=readable_error(obj.get("error")),
        raw=obj,
    )


def parse_submit_answer(obj: object) -> UpsamplerSubmitAnswer:
    """Read the synchronous answer to an upscale POST (already JSON-decoded).

    Both ``id`` and ``status`` may be missing (the failure answer has no ``id``),
    but when present they must be a non-empty string and a string.
    """
    if not isinstance(obj, dict):
        raise RejectedPayload("payload must be a JSON object")
    raw_id = obj.get("id")
    job_id = None if raw_id is None else _job_id(raw_id)
    status = obj.get("status")
    if status is not None and not isinstance(status, str):
        raise RejectedPayload("'status' must be a string")
    return UpsamplerSubmitAnswer(
        id=job_id,
        status=status,
        credit_cost=_number(obj.get("creditCost")),
        error=readable_error(obj.get("error")),
        raw=obj,
    )
