"""Photio payloads: the synchronous upscale answer ``{"status_code", "body"}``.

Pure data, no I/O. Lenient about what the answer does not need to carry
(unknown keys, a numeric string for ``status_code``, an optional
``data:*;base64,`` prefix, line-wrapped or unpadded base64) and strict about
what it does: anything unusable raises :class:`~schemas.errors.RejectedPayload`,
never another exception. See providers.md section 3.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import RejectedPayload
from schemas.payloads import readable_error

_DATA_URI = re.compile(r"\Adata:[^,]{0,200}?;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")
_BASE64 = re.compile(rb"\A[A-Za-z0-9+/]*={0,2}\Z")
_MAX_STATUS_CODE = 999


@dataclass(frozen=True, slots=True)
class PhotioAnswer:
    """A decoded answer. ``body`` is the raw string field (base64 or a message)."""

    status_code: int | None
    body: str | None = field(repr=False)
    message: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _status_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value <= _MAX_STATUS_CODE:
        return value
    if isinstance(value, float) and value.is_integer() and 0 <= value <= _MAX_STATUS_CODE:
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        digits = value.strip()
        if len(digits) <= 3:
            return int(digits)
    return None


def parse_photio_answer(obj: object) -> PhotioAnswer:
    """Read an upscale answer (already JSON-decoded).

    Raises :class:`RejectedPayload` only when ``obj`` is not an object. A missing or
    odd ``status_code`` becomes ``None``; a non-string ``body`` becomes ``None``.
    ``message`` is a short readable text from ``message``/``error``/``detail``, or
    from ``body`` when the answer is not a success (Photio's error bodies are
    undocumented). ``raw`` never holds the image: a success's (or any long)
    ``body`` is replaced by its length.
    """
    if not isinstance(obj, dict):
        raise RejectedPayload("payload must be a JSON object")
    status_code = _status_code(obj.get("status_code"))
    raw_body = obj.get("body")
    body = raw_body if isinstance(raw_body, str) else None
    message = None
    for key in ("message", "error", "detail"):
        message = readable_error(obj.get(key))
        if message is not None:
            break
    if message is None and status_code != 200 and raw_body is not None:
        message = readable_error(raw_body)
    raw = dict(obj)
    if isinstance(raw_body, str) and (status_code == 200 or len(raw_body) > 200):
        raw["body"] = f"<{len(raw_body)} characters>"
    return PhotioAnswer(status_code=status_code, body=body, message=message, raw=raw)


def strip_data_uri(text: str) -> str:
    """``text`` without a leading ``data:<type>;base64,`` prefix, if it has one."""
    match = _DATA_URI.match(text)
    return text[match.end() :] if match else text


def decode_image_body(text: str) -> bytes:
    """Decode a base64 image string, with or without a data-URI prefix.

    Whitespace (line wrapping) is ignored, missing ``=`` padding is tolerated and
    the URL-safe alphabet is accepted. Raises :class:`RejectedPayload` for empty
    or invalid base64.
    """
    try:
        data = strip_data_uri(text).encode("ascii")
    except UnicodeEncodeError as exc:
        raise RejectedPayload("image body is not base64 (non-ASCII characters)") from exc
    data = _WHITESPACE.sub(b"", data)
    if b"-" in data or b"_" in data:
        data = data.translate(bytes.maketrans(b"-_", b"+/"))
    if not data:
        raise RejectedPayload("image body is empty")
    if not _BASE64.match(data):
        raise RejectedPayload("image body is not valid base64")
    unpadded = data.rstrip(b"=")
    if len(unpadded) % 4 == 1:
        raise RejectedPayload("image body is not valid base64 (truncated)")
    padded = unpadded + b"=" * (-len(unpadded) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RejectedPayload("image body is not valid base64") from exc
    if not decoded:
        raise RejectedPayload("image body is empty")
    return decoded
