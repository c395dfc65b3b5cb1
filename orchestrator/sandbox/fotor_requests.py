"""What a caller sends to the sandbox's Fotor upscale POST, read and checked.

``{"upscaling_resize", "userImageUrl", "max_image_width", "max_image_height"}``:
the factor 1..4, an http(s) URL or a base64 image (a data URI or bare), and both
size caps. Anything malformed is :class:`InvalidSubmit`, which the route answers
with a 400 envelope.
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


@dataclass(frozen=True, slots=True)
class SubmitBody:
    image_url: str | None
    image_data: bytes | None = field(repr=False)
    factor: float
    max_width: int
    max_height: int


class InvalidSubmit(ValueError):
    """The submit body is malformed or semantically wrong (400)."""


def decode_image_field(value: str, max_bytes: int) -> bytes:
    """Bytes from a data URI (``data:<type>;base64,...``) or bare base64."""
    text = value
    if text.startswith("data:"):
        meta, sep, text = text[5:].partition(",")
        if not sep or not meta.endswith(";base64"):
            raise InvalidSubmit("userImageUrl data URI must be base64 encoded")
    text = "".join(text.split())
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise InvalidSubmit(f"userImageUrl image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSubmit("userImageUrl must be an image URL or a base64 image") from None
    if not data:
        raise InvalidSubmit("userImageUrl is empty")
    return data


def _side(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise InvalidSubmit(f"{key} is required and must be an integer from 1 to {MAX_SIDE}")
    return value


def parse_submit(raw: bytes, max_input_bytes: int) -> SubmitBody:
    """Read the upscale POST body or raise ``InvalidSubmit``."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidSubmit("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidSubmit("request body must be a JSON object")
    factor = body.get("upscaling_resize")
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        raise InvalidSubmit("upscaling_resize is required and must be a number")
    if not (math.isfinite(factor) and MIN_FACTOR <= factor <= MAX_FACTOR):
        raise InvalidSubmit(f"upscaling_resize must be between {MIN_FACTOR:g} and {MAX_FACTOR:g}")
    image = body.get("userImageUrl")
    if not isinstance(image, str) or not image.strip():
        raise InvalidSubmit("userImageUrl is required")
    image_url: str | None = None
    image_data: bytes | None = None
    if is_http_url(image):
        image_url = image
    else:
        image_data = decode_image_field(image.strip(), max_input_bytes)
    return SubmitBody(
        image_url=image_url,
        image_data=image_data,
        factor=float(factor),
        max_width=_side(body, "max_image_width"),
        max_height=_side(body, "max_image_height"),
    )
