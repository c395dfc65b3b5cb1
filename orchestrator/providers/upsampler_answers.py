"""What Upsampler's answers mean: submit, ``GET /status/{id}`` and the webhook body.

Pure functions from status, headers and body to the project's types; see
providers.md section 2.

Where the documentation is silent:

- A FAILED body answered with a 2xx on submit is ``ProviderRejected(provider_failed)``;
  the HTTP code decides the reason (400 ``rejected_input``, 401 ``provider_auth``,
  403 ``insufficient_credit``), the body only gives the message.
- 404 on ``GET /status/{id}`` means the provider does not know the job: that is a
  FAILED update (``provider_failed``), not an exception, so the state machine ends it.
- ``SUCCESS`` without any URL is a FAILED update (``provider_failed``, "no result URL").
- A 504 on submit is ``ProviderUncertain``: a gateway timed out waiting for the
  origin, which may still queue (and bill) the job. 408 and the other 5xx are
  ``ProviderUnavailable``; the doc says a 500 comes before the job is queued.
- A 429 without a usable ``Retry-After`` waits 60 s (it may mean a full queue).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

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
from schemas.jobs import Failure, FailureReason, ProviderUpdate, UpdateStatus
from schemas.payloads import decode_json, error_message
from schemas.upsampler import UpsamplerResult, parse_submit_answer, parse_upsampler_result

NAME: Final = "upsampler"


def _message(body: bytes, status_code: int) -> str:
    """The provider's message from an error answer, whatever its shape."""
    return error_message(body, ("error", "message")) or f"HTTP {status_code}"


def _classify_error(
    status_code: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None
) -> ProviderError:
    """The error for a non-2xx answer shared by submit and status."""
    msg = _message(body, status_code)
    if status_code == 400:
        return ProviderRejected(
            f"Upsampler rejected the request: {msg}", FailureReason.REJECTED_INPUT
        )
    if status_code == 401:
        return ProviderRejected(
            f"Upsampler refused the API key (missing or invalid): {msg}",
            FailureReason.PROVIDER_AUTH,
        )
    if status_code == 403:
        return ProviderRejected(
            f"Upsampler refused the request (API key inactive or insufficient credits): {msg}",
            FailureReason.INSUFFICIENT_CREDIT,
        )
    if status_code == 429:
        return ProviderThrottled(
            f"Upsampler rate limit or queue size exceeded: {msg}",
            parse_retry_after(headers, now=now),
        )
    return answered("Upsampler", status_code, msg)


def classify_submit(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
) -> Accepted:
    """Map the answer to an upscale POST to :class:`Accepted` or a ``ProviderError``.

    A ``{"status": "FAILED"}`` body is a rejection whatever the HTTP code. A 2xx
    without a readable body or without an ``id`` is ``ProviderUncertain``: the job
    may exist and be billed, and we cannot tell.
    """
    if not 200 <= status_code <= 299:
        if status_code == 504:
            raise ProviderUncertain(
                "Upsampler's gateway timed out (HTTP 504); the job may exist and be billed"
            )
        raise _classify_error(status_code, headers, body, now=now)
    try:
        answer = parse_submit_answer(decode_json(body))
    except RejectedPayload as exc:
        raise ProviderUncertain(
            f"Upsampler answered HTTP {status_code} with an unreadable body ({exc.message}); "
            "the job may exist and be billed"
        ) from exc
    status = (answer.status or "").strip().upper()
    if status == "FAILED":
        raise ProviderRejected(
            f"Upsampler refused the job: {answer.error or 'no error message'}",
            FailureReason.PROVIDER_FAILED,
        )
    if answer.id is None:
        raise ProviderUncertain(
            f"Upsampler answered HTTP {status_code} without a job id; "
            "the job may exist and be billed"
        )
    update = None
    if status == "SUCCESS":
        # Not documented for submit; if it ever happens, use the outcome right away.
        update = update_from_result(parse_upsampler_result(answer.raw))
    return Accepted(provider_job_id=answer.id, cost=answer.credit_cost, update=update)


def classify_status(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    job_id: str | None = None,
    now: datetime | None = None,
) -> ProviderUpdate:
    """Map the answer to ``GET /status/{id}`` to a :class:`ProviderUpdate`.

    ``job_id`` is the id that was asked for: it fills in a missing ``id`` and a
    different one is refused. A 404 is a FAILED update (the provider does not know
    the job); a 2xx that cannot be read is ``ProviderUnavailable`` (ask again).
    """
    if status_code == 404:
        return ProviderUpdate(
            provider=NAME,
            provider_job_id=job_id,
            status=UpdateStatus.FAILED,
            failure=Failure(
                FailureReason.PROVIDER_FAILED,
                f"Upsampler does not know the job (HTTP 404): {_message(body, 404)}",
            ),
        )
    if not 200 <= status_code <= 299:
        raise _classify_error(status_code, headers, body, now=now)
    try:
        decoded = decode_json(body)
        if job_id is not None and isinstance(decoded, dict) and decoded.get("id") is None:
            decoded = {**decoded, "id": job_id}
        result = parse_upsampler_result(decoded)
    except RejectedPayload as exc:
        raise ProviderUnavailable(
            f"Upsampler answered HTTP {status_code} with an unreadable status ({exc.message})"
        ) from exc
    if job_id is not None and result.id != job_id:
        raise ProviderUnavailable("Upsampler answered the status of a different job")
    return update_from_result(result)


def update_from_result(result: UpsamplerResult) -> ProviderUpdate:
    """Normalise a result: SUCCESS and FAILED are terminal, anything else is running."""
    status = result.status.strip().upper()
    common: dict[str, Any] = {
        "provider": NAME,
        "provider_job_id": result.id,
        "cost": result.credit_cost,
        "raw": result.raw,
    }
    if status == "SUCCESS":
        url = result.image_url or result.compressed_image_url
        if url is None:
            return ProviderUpdate(
                status=UpdateStatus.FAILED,
                failure=Failure(
                    FailureReason.PROVIDER_FAILED, "Upsampler reported SUCCESS with no result URL"
                ),
                **common,
            )
        return ProviderUpdate(status=UpdateStatus.SUCCEEDED, result_url=url, **common)
    if status == "FAILED":
        return ProviderUpdate(
            status=UpdateStatus.FAILED,
            failure=Failure(
                FailureReason.PROVIDER_FAILED, result.error or "Upsampler reported FAILED"
            ),
            **common,
        )
    # IN_QUEUE, IN_PROGRESS and values nobody documented: not terminal (providers.md 2.4).
    return ProviderUpdate(status=UpdateStatus.RUNNING, **common)


def parse_callback_body(body: bytes) -> ProviderUpdate:
    """A webhook body to an update; raises only :class:`RejectedPayload`."""
    return update_from_result(parse_upsampler_result(decode_json(body)))
