"""The options a Fotor job takes, per operation.

Upscale: the scale and the two output size caps. Fotor's upscaler takes
``upscaling_resize`` (1..4) and caps the output at ``max_image_width`` x
``max_image_height`` (64..8192 each). The image and the factor come from the job
itself, so those wire fields are refused as options. See providers.md section 1.

Replace: AI Replace (``POST /v1/aiart/replacer``) documents only ``imageUrl``,
``content`` and ``maskImageUrl``, all three taken from the job (image, prompt,
mask), so it takes no options: every key is refused, those three with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from schemas.errors import RejectedInput

MIN_SCALE: Final = 1.0
MAX_SCALE: Final = 4.0
MIN_SIDE: Final = 64
MAX_SIDE: Final = 8192
DEFAULT_MAX_SIDE: Final = 2048
OPTIONS: Final = ("max_image_width", "max_image_height")
_RESERVED: Final[Mapping[str, str]] = {
    "userImageUrl": "the image comes from the job's image",
    "upscaling_resize": "the factor comes from the job's scale",
}
_REPLACE_RESERVED: Final[Mapping[str, str]] = {
    "imageUrl": "the image comes from the job's image",
    "content": "the text comes from the job's prompt",
    "maskImageUrl": "the mask comes from the job's mask",
}


def checked_side(key: str, value: object) -> int:
    """``value`` as a side length in pixels (integral floats allowed), or :class:`RejectedInput`."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
        raise RejectedInput(f"option '{key}' must be an integer from {MIN_SIDE} to {MAX_SIDE}")
    return value


def validate_fotor_options(
    scale: float,
    options: Mapping[str, Any],
    *,
    default_width: int = DEFAULT_MAX_SIDE,
    default_height: int = DEFAULT_MAX_SIDE,
) -> dict[str, Any]:
    """Check ``scale`` (1..4) and ``options``; return both size caps, defaults filled in.

    Raises :class:`RejectedInput` naming the offending key.
    """
    if not isinstance(options, Mapping):
        raise RejectedInput("options must be a JSON object")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise RejectedInput("scale must be a number")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise RejectedInput(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g} for Fotor")
    for key in options:
        if key in _RESERVED:
            raise RejectedInput(f"unknown option '{key}': {_RESERVED[key]}")
        if key not in OPTIONS:
            raise RejectedInput(f"unknown option '{key}' (known: {', '.join(OPTIONS)})")
    return {
        "max_image_width": checked_side(
            "max_image_width", options.get("max_image_width", default_width)
        ),
        "max_image_height": checked_side(
            "max_image_height", options.get("max_image_height", default_height)
        ),
    }


def validate_replace_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check the options of a replace job: Fotor's AI Replace takes none, so ``{}``.

    The job's scale plays no part in a replace. Raises :class:`RejectedInput`
    naming the first key given.
    """
    if not isinstance(options, Mapping):
        raise RejectedInput("options must be a JSON object")
    for key in options:
        if key in _REPLACE_RESERVED:
            raise RejectedInput(f"unknown option '{key}': {_REPLACE_RESERVED[key]}")
        raise RejectedInput(f"unknown option '{key}' (Fotor's replace takes no options)")
    return {}
