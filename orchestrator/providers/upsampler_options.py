"""The options an Upsampler job takes, per endpoint (smart, dynamic, precise).

Each endpoint takes its own subset of options and its own top scale; the image,
the factor and the webhook come from the job and the service, so those wire
fields are refused as options. See providers.md section 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from schemas.errors import RejectedInput

MAX_DESCRIPTION_CHARS = 2000

ENDPOINTS: Final = ("smart", "dynamic", "precise")
DEFAULT_ENDPOINT: Final = "precise"
MAX_SCALE: Final[Mapping[str, float]] = {"smart": 4.0, "dynamic": 4.0, "precise": 16.0}
INPUT_IMAGE_TYPES: Final = ("realism", "anime", "universal")

_ALL = frozenset(ENDPOINTS)
_SMART_DYNAMIC = frozenset({"smart", "dynamic"})
_DYNAMIC = frozenset({"dynamic"})

# option -> (kind, endpoints that take it)
_OPTIONS: Final[Mapping[str, tuple[str, frozenset[str]]]] = {
    "inputImageType": ("image_type", _ALL),
    "globalCreativity": ("level", _SMART_DYNAMIC),
    "detail": ("level", _SMART_DYNAMIC),
    "resemblance": ("level", _DYNAMIC),
    "description": ("text", _SMART_DYNAMIC),
    "shouldEnhanceFaces": ("bool", _ALL),
    "shouldPreserveBlur": ("bool", _ALL),
    "shouldPreserveHands": ("bool", _DYNAMIC),
}
_RESERVED: Final[Mapping[str, str]] = {
    "imageUrl": "the image comes from the job's image",
    "upscaleFactor": "the factor comes from the job's scale",
    "webhook": "the webhook is set by the service",
}


def validate_upsampler_options(scale: float, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``scale`` and ``options`` for the chosen endpoint; return normalised options.

    The result always holds ``endpoint``; the other keys are those given, checked by
    type and range (integral floats such as ``5.0`` become ``5``). Raises
    :class:`RejectedInput` naming the offending key.
    """
    if not isinstance(options, Mapping):
        raise RejectedInput("options must be a JSON object")
    endpoint = options.get("endpoint", DEFAULT_ENDPOINT)
    if not isinstance(endpoint, str) or endpoint not in ENDPOINTS:
        raise RejectedInput(f"options.endpoint must be one of: {', '.join(ENDPOINTS)}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise RejectedInput("scale must be a number")
    top = MAX_SCALE[endpoint]
    if not 1 <= scale <= top:
        raise RejectedInput(f"scale must be between 1 and {top:g} for the {endpoint} endpoint")
    normalised: dict[str, Any] = {"endpoint": endpoint}
    for key, value in options.items():
        if key == "endpoint":
            continue
        if key in _RESERVED:
            raise RejectedInput(f"unknown option '{key}': {_RESERVED[key]}")
        spec = _OPTIONS.get(key)
        if spec is None:
            known = ", ".join(["endpoint", *_OPTIONS])
            raise RejectedInput(f"unknown option '{key}' (known: {known})")
        kind, endpoints = spec
        if endpoint not in endpoints:
            takers = ", ".join(e for e in ENDPOINTS if e in endpoints)
            raise RejectedInput(
                f"option '{key}' is not supported by the {endpoint} endpoint (only {takers})"
            )
        normalised[key] = _check_option(key, kind, value)
    return normalised


def _check_option(key: str, kind: str, value: object) -> object:
    if kind == "bool":
        if not isinstance(value, bool):
            raise RejectedInput(f"option '{key}' must be true or false")
        return value
    if kind == "level":
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
            raise RejectedInput(f"option '{key}' must be an integer from 0 to 10")
        return value
    if kind == "text":
        if not isinstance(value, str):
            raise RejectedInput(f"option '{key}' must be a string")
        if len(value) > MAX_DESCRIPTION_CHARS:
            raise RejectedInput(
                f"option '{key}' must be at most {MAX_DESCRIPTION_CHARS} characters"
            )
        return value
    # image_type
    if not isinstance(value, str) or value not in INPUT_IMAGE_TYPES:
        raise RejectedInput(f"option '{key}' must be one of: {', '.join(INPUT_IMAGE_TYPES)}")
    return value
