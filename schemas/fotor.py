"""Fotor OpenAPI payloads: the ``{code, msg, data}`` envelope, task data, webhook, credits.

Pure data, no I/O. Parsing is lenient about what it does not need (unknown keys are
kept in ``raw``, odd optional fields are dropped) and strict about what it does:
anything it cannot use raises :class:`~schemas.errors.RejectedPayload`, never another
exception. The field names ``hasHsfw`` (NSFW flag) and ``infomation`` are Fotor's own
spelling and part of the contract (providers.md section 1.4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import RejectedPayload
from schemas.payloads import amount, readable_error, required_id, stripped

SUCCESS_CODE = "000"
UNKNOWN_ERROR_CODE = "999"
NO_CREDIT_CODE = "510"

MAX_CODE_CHARS = 32

# Documented task status values (0/1/2) and Fotor's client enums (3/4), section 1.4.
STATUS_RUNNING = 0
STATUS_SUCCEEDED = 1
STATUS_FAILED = 2
STATUS_TIMEOUT = 3
STATUS_CANCELLED = 4

_INT_TEXT = re.compile(r"[+-]?\d{1,9}")
_TRUE_WORDS = frozenset({"true", "1", "yes"})


@dataclass(frozen=True, slots=True)
class FotorEnvelope:
    """Every JSON answer: ``{"code": "000", "msg": "success", "data": ...}``."""

    code: str
    msg: str | None
    data: object = field(repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS_CODE


@dataclass(frozen=True, slots=True)
class FotorTask:
    """Task data from ``GET /v1/aiart/tasks/{id}`` or a (flat) webhook body.

    ``result_url`` is ``None`` when the field is absent, not a string or blank;
    ``nsfw`` is Fotor's ``hasHsfw``.
    """

    task_id: str
    status: int
    result_url: str | None
    nsfw: bool
    credits: float | None
    msg: str | None
    business_id: str | None
    type: str | None
    create_time_ms: int | None
    update_time_ms: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class FotorCredits:
    """``GET /v1/credits`` data: ``{businessId, total, remaining}``."""

    business_id: str | None
    total: float | None
    remaining: float | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


# --- field readers -------------------------------------------------------------------


def _code(value: object) -> str:
    if isinstance(value, bool) or value is None:
        raise RejectedPayload("'code' must be a string")
    if isinstance(value, int):
        if not 0 <= value < 10**9:
            raise RejectedPayload("'code' is out of range")
        return f"{value:03d}"
    if not isinstance(value, str) or not value.strip():
        raise RejectedPayload("'code' must be a non-empty string")
    text = value.strip()
    if len(text) > MAX_CODE_CHARS:
        raise RejectedPayload(f"'code' is longer than {MAX_CODE_CHARS} characters")
    return text


def _status(value: object) -> int:
    """An integer status; integral floats and digit strings are taken too."""
    if isinstance(value, bool):
        raise RejectedPayload("'status' must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise RejectedPayload("'status' must be an integer")


def _flag(value: object) -> bool:
    """Fotor's ``hasHsfw``: true for ``true``, a non-zero number or ``"true"``/``"1"``.

    A content-safety flag errs on the side of "flagged" for odd truthy spellings.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, float):
        return math.isfinite(value) and value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    return False


def _epoch_ms(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**15 else None
    if isinstance(value, float) and math.isfinite(value) and 0 <= value < 1e15:
        return int(value)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- parsers -------------------------------------------------------------------------


def parse_envelope(obj: object) -> FotorEnvelope:
    """Read any Fotor answer (already JSON-decoded).

    ``code`` must be a non-empty string (an integer is zero-padded, ``0`` -> ``"000"``);
    ``msg`` of any type is rendered readable; ``data`` is kept as it is.
    """
    if not isinstance(obj, dict):
        raise RejectedPayload("answer must be a JSON object")
    if "code" not in obj:
        raise RejectedPayload("answer has no 'code'")
    return FotorEnvelope(
        code=_code(obj.get("code")),
        msg=readable_error(obj.get("msg")),
        data=obj.get("data"),
        raw=obj,
    )


def parse_task(obj: object) -> FotorTask:
    """Read task data (the envelope's ``data``, or a flat webhook body).

    Raises :class:`RejectedPayload` when ``obj`` is not an object, ``taskId`` is not
    a non-empty string or ``status`` is not an integer. Any integer status is
    accepted here; what it means is the adapter's business.
    """
    if not isinstance(obj, dict):
        raise RejectedPayload("task data must be a JSON object")
    task_id = required_id(obj.get("taskId"), "taskId")
    if "status" not in obj:
        raise RejectedPayload("task data has no 'status'")
    return FotorTask(
        task_id=task_id,
        status=_status(obj.get("status")),
        result_url=stripped(obj.get("resultUrl")),
        nsfw=_flag(obj.get("hasHsfw")),
        credits=amount(obj.get("creditsIncrement")),
        msg=readable_error(obj.get("msg")),
        business_id=_text(obj.get("businessId")),
        type=_text(obj.get("type")),
        create_time_ms=_epoch_ms(obj.get("createTime")),
        update_time_ms=_epoch_ms(obj.get("updateTime")),
        raw=obj,
    )


def parse_webhook(obj: object) -> FotorTask:
    """Read a webhook body: flat ``{taskId, status, businessId, type, resultUrl, ...}``.

    Tolerance: a body wrapped in the API envelope (``{"code", "data": {...}}``)
    is unwrapped, since the webhook format is documented once and may drift.
    """
    if isinstance(obj, dict) and "taskId" not in obj and isinstance(obj.get("data"), dict):
        obj = obj["data"]
    return parse_task(obj)


def parse_credits(obj: object) -> FotorCredits:
    """Read ``GET /v1/credits`` data; odd or missing numbers become ``None``."""
    if not isinstance(obj, dict):
        raise RejectedPayload("credits data must be a JSON object")
    return FotorCredits(
        business_id=_text(obj.get("businessId")),
        total=amount(obj.get("total")),
        remaining=amount(obj.get("remaining")),
        raw=obj,
    )
