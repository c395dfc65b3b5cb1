"""The Upsampler adapter (``https://upsampler.com/api/v1``).

Asynchronous provider: ``POST /{endpoint}-upscale`` with a per-job ``webhook``,
then a terminal webhook and/or ``GET /status/{id}``. See providers.md section 2.

The decisions are pure functions (:func:`validate_upsampler_options`,
:func:`build_submit_body`, :func:`classify_submit`, :func:`classify_status`,
:func:`update_from_result`); :class:`UpsamplerProvider` only does the I/O and
translates ``httpx`` errors at the boundary.

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

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import httpx

from orchestrator.clock import Clock, SystemClock
from orchestrator.providers.base import Accepted, CallbackMode, SubmitRequest
from orchestrator.providers.http import JsonApi, answered, parse_retry_after, path_segment

if TYPE_CHECKING:
    from orchestrator.providers.base import Provider
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
    RejectedInput,
    RejectedPayload,
)
from schemas.jobs import Failure, FailureReason, ProviderUpdate, UpdateStatus
from schemas.payloads import MAX_PAYLOAD_BYTES, decode_json, error_message, json_number
from schemas.upsampler import UpsamplerResult, parse_submit_answer, parse_upsampler_result

NAME: Final = "upsampler"

MAX_RESPONSE_BYTES = MAX_PAYLOAD_BYTES
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

_ACCEPTED = frozenset({"IN_QUEUE", "IN_PROGRESS"})


# --- options -------------------------------------------------------------------------


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


# --- submit body ---------------------------------------------------------------------


def build_submit_body(
    request: SubmitRequest, options: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The path (relative to the base URL) and JSON body of the upscale POST.

    ``options`` are normalised options (see :func:`validate_upsampler_options`).
    Raises :class:`ProviderRejected` (``rejected_input``) when the request has no
    image URL: Upsampler only takes public URLs.
    """
    if not request.image_url:
        raise ProviderRejected("Upsampler needs a public image URL", FailureReason.REJECTED_INPUT)
    endpoint = options.get("endpoint", DEFAULT_ENDPOINT)
    payload: dict[str, Any] = {
        "imageUrl": request.image_url,
        "upscaleFactor": json_number(request.scale),
    }
    payload.update((k, v) for k, v in options.items() if k != "endpoint")
    body: dict[str, Any] = {}
    if request.callback_url is not None:
        body["webhook"] = request.callback_url
    body["input"] = payload
    return f"/{endpoint}-upscale", body


# --- answers -------------------------------------------------------------------------


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


def status_path(provider_job_id: str) -> str:
    """``/status/{id}`` with the id quoted so it stays one path segment."""
    return f"/status/{path_segment(provider_job_id)}"


# --- I/O -----------------------------------------------------------------------------


class UpsamplerProvider:
    """Upsampler behind the :class:`~orchestrator.providers.base.Provider` protocol."""

    name: str = NAME
    callback_mode: CallbackMode = "job"
    needs_image_url: bool = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        submit_timeout_s: float = 60,
        poll_timeout_s: float = 30,
        clock: Clock | None = None,
    ) -> None:
        self._api = JsonApi(
            client,
            label="Upsampler",
            base_url=base_url,
            auth={"Authorization": f"Bearer {api_key}"},
            max_bytes=MAX_RESPONSE_BYTES,
        )
        if not (submit_timeout_s > 0 and poll_timeout_s > 0):
            raise ValueError("timeouts must be positive")
        self._submit_timeout_s = float(submit_timeout_s)
        self._poll_timeout_s = float(poll_timeout_s)
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"UpsamplerProvider(base_url={self._api.base_url!r}, api_key='***')"

    def validate_options(self, scale: float, options: dict[str, Any]) -> dict[str, Any]:
        return validate_upsampler_options(scale, options)

    async def submit(self, request: SubmitRequest) -> Accepted:
        try:
            options = validate_upsampler_options(request.scale, request.options)
        except RejectedInput as exc:
            raise ProviderRejected(exc.message, FailureReason.REJECTED_INPUT) from exc
        path, body = build_submit_body(request, options)
        answer = await self._api.submit(
            path,
            body,
            self._submit_timeout_s,
            sent="job",
            not_sent="no job was created",
            unknown="the job may exist and be billed",
        )
        return classify_submit(
            answer.status_code, answer.headers, answer.body, now=self._clock.now()
        )

    async def poll(self, provider_job_id: str) -> ProviderUpdate:
        answer = await self._api.get(
            status_path(provider_job_id),
            self._poll_timeout_s,
            what="the job status",
            too_large=f"Upsampler's status answer is larger than {MAX_RESPONSE_BYTES} bytes",
        )
        return classify_status(
            answer.status_code,
            answer.headers,
            answer.body,
            job_id=provider_job_id,
            now=self._clock.now(),
        )

    def parse_callback(self, body: bytes) -> ProviderUpdate:
        return parse_callback_body(body)


if TYPE_CHECKING:

    def _conforms(provider: UpsamplerProvider) -> Provider:
        return provider
