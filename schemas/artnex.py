"""Artnex payloads: the synchronous upscale answer and its error envelope.

Success: ``{"success": true, "image_url", "request_id"?, "credits_used"?}``;
failure: ``{"success": false, "error": "<code>", "message": "<text>"}``
(providers.md section 4).

Pure data, no I/O. Lenient about unknown keys and odd optional fields (they are
dropped), strict only about the shape: a payload that is not a JSON object raises
:class:`~schemas.errors.RejectedPayload`, never another exception. Whether the
answer is usable is the adapter's decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.errors import RejectedPayload
from schemas.payloads import MAX_ID_CHARS, amount, readable_error, stripped

MAX_CODE_CHARS = 100


@dataclass(frozen=True, slots=True)
class ArtnexAnswer:
    """A decoded answer; every field is optional here."""

    success: bool | None
    image_url: str | None
    request_id: str | None
    credits_used: float | None
    error: str | None
    """The machine error code, lower-cased (``invalid_api_key``...)."""
    message: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _text(value: object, limit: int) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= limit:
        return value.strip()
    return None


def _code(value: object) -> str | None:
    """The ``error`` field as a code: a short string, or an object's ``code``."""
    if isinstance(value, dict):
        value = value.get("code")
    code = _text(value, MAX_CODE_CHARS)
    return code.lower() if code is not None else None


def parse_artnex_answer(obj: object) -> ArtnexAnswer:
    """Read an upscale answer (already JSON-decoded).

    ``success`` is kept only when it is a boolean; ``image_url`` and ``request_id``
    only when they are non-empty strings (``request_id`` of at most
    ``MAX_ID_CHARS``); ``credits_used`` only when a finite non-negative number.
    ``message`` is readable text from ``message``, else from a non-code ``error``.
    """
    if not isinstance(obj, dict):
        raise RejectedPayload("payload must be a JSON object")
    success = obj.get("success")
    raw_error = obj.get("error")
    code = _code(raw_error)
    message = readable_error(obj.get("message"))
    if message is None and raw_error is not None and code is None:
        message = readable_error(raw_error)
    if message is None and isinstance(raw_error, dict):
        message = readable_error(raw_error.get("message"))
    return ArtnexAnswer(
        success=success if isinstance(success, bool) else None,
        image_url=stripped(obj.get("image_url")),
        request_id=_text(obj.get("request_id"), MAX_ID_CHARS),
        credits_used=amount(obj.get("credits_used")),
        error=code,
        message=message,
        raw=obj,
    )
