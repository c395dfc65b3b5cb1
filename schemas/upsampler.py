"""Upsampler payloads: the submit answer and the result (webhook body = status answer).

Pure data, no I/O. Parsing is lenient about what it does not need (unknown keys,
odd optional fields) and strict about what it does: anything it cannot use raises
:class:`~schemas.errors.RejectedPayload`, never another exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.errors import RejectedPayload
from schemas.payloads import amount, job_payload, readable_error, required_id, stripped


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


def parse_upsampler_result(obj: object) -> UpsamplerResult:
    """Read a webhook body or a ``GET /status/{id}`` answer (already JSON-decoded).

    Raises :class:`RejectedPayload` when ``obj`` is not an object, ``id`` is not a
    non-empty string or ``status`` is not a string. Odd optional fields are dropped:
    a non-string URL becomes ``None``, a non-numeric ``creditCost`` is ignored and a
    non-string ``error`` is rendered readable.
    """
    obj, job_id, status = job_payload(obj)
    return UpsamplerResult(
        id=job_id,
        status=status,
        image_url=stripped(obj.get("imageUrl")),
        compressed_image_url=stripped(obj.get("compressedImageUrl")),
        credit_cost=amount(obj.get("creditCost")),
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
    job_id = None if raw_id is None else required_id(raw_id)
    status = obj.get("status")
    if status is not None and not isinstance(status, str):
        raise RejectedPayload("'status' must be a string")
    return UpsamplerSubmitAnswer(
        id=job_id,
        status=status,
        credit_cost=amount(obj.get("creditCost")),
        error=readable_error(obj.get("error")),
        raw=obj,
    )
