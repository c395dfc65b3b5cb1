"""Local provider payloads: a job as the server reports it (status answer and webhook).

``{"id", "status", "result_url"?, "width"?, "height"?, "error"?: {"code", "message"}}``;
the wire contract is documented in :mod:`orchestrator.local.app`.

Pure data, no I/O. Lenient about odd optional fields (they are dropped or made
readable) and strict about ``id`` and ``status``: anything it cannot use raises
:class:`~schemas.errors.RejectedPayload`, never another exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.payloads import job_payload, readable_error, stripped

MAX_CODE_CHARS = 64
MAX_URL_CHARS = 8192


@dataclass(frozen=True, slots=True)
class LocalJobPayload:
    """A job as the server reports it (``GET /api/v1/jobs/{id}`` and the webhook)."""

    id: str
    status: str
    result_url: str | None
    width: int | None
    height: int | None
    error_code: str | None
    error_message: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _text(value: object, limit: int) -> str | None:
    text = stripped(value)
    return text[:limit] if text is not None else None


def _dimension(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def error_code(error: object) -> str | None:
    """The ``code`` of an ``error`` object (cut to :data:`MAX_CODE_CHARS`), if it has one."""
    return _text(error.get("code"), MAX_CODE_CHARS) if isinstance(error, dict) else None


def parse_local_payload(obj: object) -> LocalJobPayload:
    """Read a decoded job payload; raises only :class:`RejectedPayload`.

    ``id`` must be a non-empty string and ``status`` a string; odd optional fields
    are dropped (a non-string URL, a non-positive size) or made readable (``error``).
    """
    obj, job_id, status = job_payload(obj)
    error = obj.get("error")
    return LocalJobPayload(
        id=job_id,
        status=status,
        result_url=_text(obj.get("result_url"), MAX_URL_CHARS),
        width=_dimension(obj.get("width")),
        height=_dimension(obj.get("height")),
        error_code=error_code(error),
        error_message=readable_error(error),
        raw=obj,
    )
