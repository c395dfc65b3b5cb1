"""What Fotor's answers mean: submit, task details, credits and the webhook body.

Every answer is the ``{code, msg, data}`` envelope, and ``code != "000"`` inside
an HTTP 200 is an error. These are pure functions from status, headers and body
to the project's types; see providers.md section 1.

Where the documentation is silent:

- ``code "999"`` (documented only as "unknown error") on **submit** is
  ``ProviderRejected(provider_failed)``, not ``ProviderUnavailable``: the answer
  is complete and carries no ``taskId``, so an automatic resubmit could create a
  second, billed task if the first one was in fact queued, and Fotor's own SDK
  treats it as a terminal ``FotorAPIError``. The user sees a clear failure and may
  resubmit deliberately. On **poll** and **credits** it is ``ProviderUnavailable``:
  repeating a GET is harmless, and failing a job that may still succeed (and be
  billed) on one odd answer would be worse. ``"510"`` is ``insufficient_credit``
  everywhere; any other code is ``ProviderRejected(provider_failed)``.
- HTTP 502 and 504 on submit are ``ProviderUncertain`` (a gateway gave up on an
  origin that may still create the task); 408 and the other 5xx are
  ``ProviderUnavailable``. 403 (undocumented) is ``provider_auth``, like 401.
- A 429 without a ``Retry-After`` waits :data:`DEFAULT_RETRY_AFTER_S` (30 s);
  an unreadable one falls back to the shared parser's default.
- Status 1 needs a usable ``resultUrl``: empty is FAILED ``provider_failed``
  ("no result URL"), a scheme other than http(s) or Fotor's ``s3://img-pub-fotor/``
  bucket (rewritten to ``s3_base_url``) is FAILED ``result_invalid``.
  ``hasHsfw`` true is FAILED ``nsfw`` whatever the status. 3 and 4 (Fotor's
  client enums TIMEOUT and CANCELLED) are FAILED; any other status is RUNNING
  until our own deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

from orchestrator.providers.base import Accepted
from orchestrator.providers.http import answered, parse_retry_after
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
    RejectedPayload,
)
from schemas.fotor import (
    NO_CREDIT_CODE,
    STATUS_CANCELLED,
    STATUS_FAILED,
    STATUS_SUCCEEDED,
    STATUS_TIMEOUT,
    UNKNOWN_ERROR_CODE,
    FotorEnvelope,
    FotorTask,
    parse_credits,
    parse_envelope,
    parse_task,
    parse_webhook,
)
from schemas.jobs import Failure, FailureReason, ProviderUpdate, UpdateStatus
from schemas.payloads import decode_json, error_message, json_number

NAME: Final = "fotor"

DEFAULT_S3_BASE_URL: Final = "https://pub-static.fotor.com"
S3_PREFIX: Final = "s3://img-pub-fotor/"

DEFAULT_RETRY_AFTER_S = 30.0

Call = Literal["submit", "poll", "credits"]


def fotor_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float:
    """Seconds to wait after a 429: ``Retry-After`` if sent, else 30 s."""
    return parse_retry_after(headers, now=now, missing=DEFAULT_RETRY_AFTER_S)


def _message(body: bytes, status_code: int) -> str:
    """The provider's message from an error answer, whatever its shape."""
    return error_message(body, ("msg", "message", "error")) or f"HTTP {status_code}"


def _http_error(
    status_code: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None
) -> ProviderError:
    """The error for a non-2xx answer, shared by every call."""
    msg = _message(body, status_code)
    if status_code == 400:
        return ProviderRejected(f"Fotor rejected the request: {msg}", FailureReason.REJECTED_INPUT)
    if status_code in (401, 403):
        return ProviderRejected(
            f"Fotor refused the API key (HTTP {status_code}): {msg}", FailureReason.PROVIDER_AUTH
        )
    if status_code == 429:
        return ProviderThrottled(
            f"Fotor rate limit exceeded: {msg}", fotor_retry_after(headers, now=now)
        )
    return answered("Fotor", status_code, msg)


def _code_error(envelope: FotorEnvelope, call: Call) -> ProviderError:
    """The error for an envelope whose ``code`` is not ``"000"`` (see module docstring)."""
    msg = envelope.msg or "no message"
    if envelope.code == NO_CREDIT_CODE:
        return ProviderRejected(
            f"Fotor: not enough credits (code 510): {msg}", FailureReason.INSUFFICIENT_CREDIT
        )
    if envelope.code == UNKNOWN_ERROR_CODE and call != "submit":
        return ProviderUnavailable(f"Fotor answered an unknown error (code 999): {msg}")
    return ProviderRejected(
        f"Fotor answered code {envelope.code}: {msg}", FailureReason.PROVIDER_FAILED
    )


def classify_submit(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
) -> Accepted:
    """Map the answer to a submit POST (upscale or replace) to :class:`Accepted` or an error.

    A 2xx that cannot be read, or a ``"000"`` without a ``taskId``, is
    ``ProviderUncertain``: the task may exist and be billed, and we cannot tell.
    """
    if not 200 <= status_code <= 299:
        if status_code in (502, 504):
            raise ProviderUncertain(
                f"Fotor's gateway failed (HTTP {status_code}); the task may exist and be billed"
            )
        raise _http_error(status_code, headers, body, now=now)
    try:
        envelope = parse_envelope(decode_json(body))
    except RejectedPayload as exc:
        raise ProviderUncertain(
            f"Fotor answered HTTP {status_code} with an unreadable body ({exc.message}); "
            "the task may exist and be billed"
        ) from exc
    if not envelope.ok:
        raise _code_error(envelope, "submit")
    data = envelope.data
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > 512:
        raise ProviderUncertain(
            "Fotor accepted the request without a usable taskId; the task may exist and be billed"
        )
    return Accepted(provider_job_id=task_id)


def _success_envelope(
    status_code: int, headers: Mapping[str, str], body: bytes, call: Call, now: datetime | None
) -> FotorEnvelope:
    """The ``"000"`` envelope of a GET answer, or the error to raise."""
    if not 200 <= status_code <= 299:
        raise _http_error(status_code, headers, body, now=now)
    try:
        envelope = parse_envelope(decode_json(body))
    except RejectedPayload as exc:
        raise ProviderUnavailable(
            f"Fotor answered HTTP {status_code} with an unreadable body ({exc.message})"
        ) from exc
    if not envelope.ok:
        raise _code_error(envelope, call)
    return envelope


def classify_task(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    task_id: str | None = None,
    s3_base_url: str = DEFAULT_S3_BASE_URL,
    now: datetime | None = None,
) -> ProviderUpdate:
    """Map the answer to ``GET /v1/aiart/tasks/{id}`` to a :class:`ProviderUpdate`.

    ``task_id`` is the id asked for: it fills in a missing ``taskId`` and a different
    one is refused. Unreadable task data is ``ProviderUnavailable`` (ask again).
    """
    envelope = _success_envelope(status_code, headers, body, "poll", now)
    data = envelope.data
    if task_id is not None and isinstance(data, dict) and data.get("taskId") is None:
        data = {**data, "taskId": task_id}
    try:
        task = parse_task(data)
    except RejectedPayload as exc:
        raise ProviderUnavailable(f"Fotor answered unreadable task data ({exc.message})") from exc
    if task_id is not None and task.task_id != task_id:
        raise ProviderUnavailable("Fotor answered the details of a different task")
    return update_from_task(task, s3_base_url=s3_base_url)


def classify_credits(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Map the answer to ``GET /v1/credits`` to ``{business_id, total, remaining}``."""
    envelope = _success_envelope(status_code, headers, body, "credits", now)
    try:
        credits = parse_credits(envelope.data)
    except RejectedPayload as exc:
        raise ProviderUnavailable(f"Fotor answered unreadable credits ({exc.message})") from exc
    return {
        "business_id": credits.business_id,
        "total": _whole(credits.total),
        "remaining": _whole(credits.remaining),
    }


def _whole(value: float | None) -> float | int | None:
    return None if value is None else json_number(value)


def rewrite_result_url(url: str, s3_base_url: str = DEFAULT_S3_BASE_URL) -> str | None:
    """A fetchable URL for ``resultUrl``, or ``None`` when it is not usable.

    http(s) URLs are kept; ``s3://img-pub-fotor/<path>`` becomes
    ``{s3_base_url}/<path>`` (as Fotor's own plugin does); anything else is ``None``.
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return None
    if scheme.lower() in ("http", "https"):
        return text if rest and not rest.startswith("/") else None
    if text[: len(S3_PREFIX)].lower() == S3_PREFIX:
        path = text[len(S3_PREFIX) :].lstrip("/")
        return f"{s3_base_url.rstrip('/')}/{path}" if path else None
    return None


def update_from_task(task: FotorTask, *, s3_base_url: str = DEFAULT_S3_BASE_URL) -> ProviderUpdate:
    """Normalise task data (poll answer or webhook body); see the module docstring."""
    common: dict[str, Any] = {
        "provider": NAME,
        "provider_job_id": task.task_id,
        "cost": task.credits,
        "raw": task.raw,
    }

    def failed(reason: str, message: str) -> ProviderUpdate:
        return ProviderUpdate(
            status=UpdateStatus.FAILED, failure=Failure(reason, message), **common
        )

    if task.nsfw:
        return failed(
            FailureReason.NSFW, f"Fotor flagged the image as NSFW (hasHsfw, status {task.status})"
        )
    if task.status == STATUS_SUCCEEDED:
        if task.result_url is None:
            return failed(
                FailureReason.PROVIDER_FAILED, "Fotor reported status 1 with no result URL"
            )
        url = rewrite_result_url(task.result_url, s3_base_url)
        if url is None:
            scheme = task.result_url.partition(":")[0][:20]
            return failed(
                FailureReason.RESULT_INVALID,
                f"Fotor reported a result URL that cannot be fetched (scheme {scheme!r})",
            )
        return ProviderUpdate(status=UpdateStatus.SUCCEEDED, result_url=url, **common)
    if task.status == STATUS_FAILED:
        return failed(FailureReason.PROVIDER_FAILED, task.msg or "Fotor reported the task failed")
    if task.status == STATUS_TIMEOUT:
        return failed(FailureReason.PROVIDER_FAILED, task.msg or "Fotor timed the task out")
    if task.status == STATUS_CANCELLED:
        return failed(FailureReason.PROVIDER_FAILED, task.msg or "Fotor cancelled the task")
    # STATUS_RUNNING (0) and values nobody documented: not terminal (providers.md 1.4).
    return ProviderUpdate(status=UpdateStatus.RUNNING, **common)


def parse_callback_body(body: bytes, *, s3_base_url: str = DEFAULT_S3_BASE_URL) -> ProviderUpdate:
    """A webhook body to an update; raises only :class:`RejectedPayload`."""
    return update_from_task(parse_webhook(decode_json(body)), s3_base_url=s3_base_url)
