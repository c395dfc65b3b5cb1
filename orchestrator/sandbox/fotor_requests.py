"""What a caller sends to the sandbox's Fotor submit POSTs, read and checked.

- Upscale: ``{"upscaling_resize", "userImageUrl", "max_image_width",
  "max_image_height"}``: the factor 1..4, an http(s) URL or a base64 image (a data
  URI or bare), and both size caps.
- Replace: ``{"imageUrl", "content", "maskImageUrl"}``: the image and the mask,
  each an http(s) URL or a base64 image as above, and the prompt (a non-blank
  string of at most :data:`MAX_CONTENT_CHARS` characters; the limit is the
  sandbox's own, Fotor documents none).

Anything malformed is :class:`InvalidSubmit`, which the route answers with a 400
envelope.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from orchestrator.sandbox.wire import is_http_url

MIN_FACTOR, MAX_FACTOR = 1.0, 4.0
MAX_SIDE = 8192
MAX_CONTENT_CHARS = 10_000


@dataclass(frozen=True, slots=True)
class SubmitBody:
    image_url: str | None
    image_data: bytes | None = field(repr=False)
    factor: float
    max_width: int
    max_height: int


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    image_url: str | None
    image_data: bytes | None = field(repr=False)
    mask_url: str | None
    mask_data: bytes | None = field(repr=False)
    prompt: str


class InvalidSubmit(ValueError):
    """The submit body is malformed or semantically wrong (400)."""


def decode_image_field(value: str, max_bytes: int, key: str = "userImageUrl") -> bytes:
    """Bytes from a data URI (``data:<type>;base64,...``) or bare base64 in field ``key``."""
    text = value
    if text.startswith("data:"):
        meta, sep, text = text[5:].partition(",")
        if not sep or not meta.endswith(";base64"):
            raise InvalidSubmit(f"{key} data URI must be base64 encoded")
    text = "".join(text.split())
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise InvalidSubmit(f"{key} image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSubmit(f"{key} must be an image URL or a base64 image") from None
    if not data:
        raise InvalidSubmit(f"{key} is empty")
    return data


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidSubmit("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidSubmit("request body must be a JSON object")
    return body


def _image(body: dict[str, Any], key: str, max_bytes: int) -> tuple[str | None, bytes | None]:
    """``(url, None)`` for an http(s) URL in ``key``, ``(None, bytes)`` for base64."""
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidSubmit(f"{key} is required")
    if is_http_url(value):
        return value, None
    return None, decode_image_field(value.strip(), max_bytes, key)


def _side(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise InvalidSubmit(f"{key} is required and must be an integer from 1 to {MAX_SIDE}")
    return value


def parse_submit(raw: bytes, max_input_bytes: int) -> SubmitBody:
    """Read the upscale POST body or raise ``InvalidSubmit``."""
    body = _json_object(raw)
    factor = body.get("upscaling_resize")
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        raise InvalidSubmit("upscaling_resize is required and must be a number")
    if not (math.isfinite(factor) and MIN_FACTOR <= factor <= MAX_FACTOR):
        raise InvalidSubmit(f"upscaling_resize must be between {MIN_FACTOR:g} and {MAX_FACTOR:g}")
    image_url, image_data = _image(body, "userImageUrl", max_input_bytes)
    return SubmitBody(
        image_url=image_url,
        image_data=image_data,
        factor=float(factor),
        max_width=_side(body, "max_image_width"),
        max_height=_side(body, "max_image_height"),
    )


def parse_replace(raw: bytes, max_input_bytes: int) -> ReplaceBody:
    """Read the replace POST body or raise ``InvalidSubmit``.

    The images are only read here, not decoded: the route fetches URLs and checks
    both images before it creates the task.
    """
    body = _json_object(raw)
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise InvalidSubmit("content is required and must be a non-empty string")
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidSubmit(f"content is longer than {MAX_CONTENT_CHARS} characters")
    image_url, image_data = _image(body, "imageUrl", max_input_bytes)
    mask_url, mask_data = _image(body, "maskImageUrl", max_input_bytes)
    return ReplaceBody(
        image_url=image_url,
        image_data=image_data,
        mask_url=mask_url,
        mask_data=mask_data,
        prompt=content,
    )
