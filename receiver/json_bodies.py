"""The one place JSON from a client is parsed: capped in size, bounded in depth.

Python's parser gives up near a thousand levels with a ``RecursionError``, and a
structure that parses may still be too deep to serialise again. No client means
more than :data:`MAX_DEPTH` levels, so anything deeper is refused as a 400.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from receiver.bodies import read_capped
from schemas.errors import RejectedInput

MAX_DEPTH = 64
# Operator and subscription bodies are a few fields; 64 KiB is generous.
SMALL_BODY_BYTES = 64 * 1024


def _refuse_constant(name: str) -> Any:
    raise RejectedInput(f"JSON has {name}, which is not a JSON number")


def parse_json(raw: bytes | str, *, what: str = "body") -> Any:
    """The JSON value in ``raw``; RejectedInput if it is not JSON or is nested too deeply."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise RejectedInput(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise RejectedInput(f"{what} must be JSON") from exc
    if _brackets(raw) > MAX_DEPTH and depth_of(value) > MAX_DEPTH:
        raise RejectedInput(f"{what} is nested more than {MAX_DEPTH} levels deep")
    return value


def _brackets(raw: bytes | str) -> int:
    """An upper bound of the depth, counted at C speed (strings may hold brackets too)."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def depth_of(value: Any) -> int:
    """How many arrays and objects deep ``value`` goes (without recursing)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


async def read_object(request: Request, *, limit: int = SMALL_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object; an empty (or blank) body is ``{}``."""
    raw = await read_capped(request, limit)
    if not raw.strip():
        return {}
    payload = parse_json(raw)
    if not isinstance(payload, dict):
        raise RejectedInput("body must be a JSON object")
    return payload


def parse_json_field(fields: Mapping[str, str], name: str) -> Any:
    """The JSON value of a form field, or None when the field is absent or empty."""
    raw = fields.get(name)
    if raw is None or raw == "":
        return None
    return parse_json(raw, what=f"form field {name!r}")
