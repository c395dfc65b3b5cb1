"""The adapter for the local provider (the app in :mod:`orchestrator.local.app`).

It talks to the local server over HTTP exactly like to a cloud provider:
``POST {base}/api/v1/upscale`` with the job's signed callback URL as ``webhook``,
then a terminal webhook and/or ``GET {base}/api/v1/jobs/{id}``. It offers
upscale and replace; a replace sends the image and the mask inline (base64)
with the prompt, which the local server accepts and ignores (it inpaints from
the surrounding pixels; it is not a generative model). The wire
contract is documented in the server's module docstring; this module depends on
it, not on the server's code.

The decisions are pure functions (:func:`validate_local_options`,
:func:`build_submit_body`, :func:`classify_submit`, :func:`classify_status`,
:func:`update_from_payload`; the payload itself is read by
:func:`schemas.local.parse_local_payload`); :class:`LocalProvider` only does the
I/O, through :class:`~orchestrator.providers.http.JsonApi`, which translates
``httpx`` errors at the boundary.

Mapping:

- submit 400 and 413 are ``ProviderRejected(rejected_input)``, 401
  ``provider_auth``, 429 ``ProviderThrottled`` (``Retry-After``), 504
  ``ProviderUncertain``, 408/5xx ``ProviderUnavailable``, any other status
  ``ProviderRejected(provider_failed)``; a 2xx without a readable ``id`` is
  ``ProviderUncertain``.
- a 404 on the status endpoint is a FAILED update (``provider_failed``): the
  server keeps jobs in memory, so after a restart it no longer knows them.
- a FAILED job whose ``error.code`` is an input error (:data:`INPUT_ERROR_CODES`)
  fails with ``rejected_input``, any other with ``provider_failed``; SUCCEEDED
  without a ``result_url`` is FAILED (``provider_failed``).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import httpx

from orchestrator.common.clock import Clock, SystemClock
from orchestrator.providers.base import Accepted, CallbackMode, SubmitRequest
from orchestrator.providers.http import JsonApi, answered, parse_retry_after, path_segment
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
    RejectedInput,
    RejectedPayload,
)
from schemas.jobs import Failure, FailureReason, Operation, ProviderUpdate, UpdateStatus
from schemas.local import LocalJobPayload, error_code, parse_local_payload
from schemas.payloads import (
    MAX_PAYLOAD_BYTES,
    body_excerpt,
    decode_json,
    json_number,
    readable_error,
)

if TYPE_CHECKING:
    from orchestrator.providers.base import Provider

NAME: Final = "local"

MIN_SCALE: Final = 1.0
MAX_SCALE: Final = 8.0
OPTIONS: Final = ("engine",)

QUEUED: Final = "QUEUED"
RUNNING: Final = "RUNNING"
SUCCEEDED: Final = "SUCCEEDED"
FAILED: Final = "FAILED"

INPUT_ERROR_CODES: Final = frozenset(
    {
        "invalid_request",
        "invalid_image",
        "input_too_large",
        "unknown_engine",
        "input_unreachable",
        "payload_too_large",
        "invalid_mask",
    }
)
"""Error codes that blame the input: the job fails with ``rejected_input``."""

MAX_RESPONSE_BYTES: Final = MAX_PAYLOAD_BYTES


# --- options -------------------------------------------------------------------------


def validate_local_options(
    scale: float, options: Mapping[str, Any], engines: list[str]
) -> dict[str, Any]:
    """Check ``scale`` (1..8) and ``options`` (only ``engine``, one of ``engines``).

    Returns the options to store (``engine`` only when given: without it the server
    uses its default). Raises :class:`RejectedInput` naming the offending value.
    """
    if not isinstance(options, Mapping):
        raise RejectedInput("options must be a JSON object")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise RejectedInput("scale must be a number")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise RejectedInput(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g}")
    unknown = sorted(str(key) for key in options if key not in OPTIONS)
    if unknown:
        raise RejectedInput(f"unknown option '{unknown[0]}' (known: {', '.join(OPTIONS)})")
    normalised: dict[str, Any] = {}
    if "engine" in options:
        engine = options["engine"]
        if not isinstance(engine, str) or engine not in engines:
            raise RejectedInput(f"option 'engine' must be one of: {', '.join(engines)}")
        normalised["engine"] = engine
    return normalised


def build_submit_body(request: SubmitRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /api/v1/upscale``: the image inline when we have its bytes.

    A replace sends ``operation``, ``prompt`` and the mask (inline too when we have
    its bytes) instead of ``scale`` and ``engine``; an upscale body is unchanged.
    Raises :class:`ProviderRejected` (``rejected_input``) when the request has no
    image, or is a replace without a prompt or a mask.
    """
    body: dict[str, Any] = {}
    if request.image_bytes is not None:
        body["image_base64"] = base64.b64encode(request.image_bytes).decode("ascii")
    elif request.image_url:
        body["image_url"] = request.image_url
    else:
        raise ProviderRejected("the job has no input image", FailureReason.REJECTED_INPUT)
    if request.operation is Operation.REPLACE:
        return _replace_body(request, body)
    body["scale"] = json_number(request.scale)
    if "engine" in options:
        body["engine"] = options["engine"]
    if request.callback_url is not None:
        body["webhook"] = request.callback_url
    return body


def _replace_body(request: SubmitRequest, body: dict[str, Any]) -> dict[str, Any]:
    prompt = (request.prompt or "").strip()
    if not prompt:
        raise ProviderRejected("a replace job needs a prompt", FailureReason.REJECTED_INPUT)
    body["operation"] = Operation.REPLACE.value
    body["prompt"] = prompt
    if request.mask_bytes is not None:
        body["mask_base64"] = base64.b64encode(request.mask_bytes).decode("ascii")
    elif request.mask_url:
        body["mask_url"] = request.mask_url
    else:
        raise ProviderRejected("a replace job needs a mask", FailureReason.REJECTED_INPUT)
    if request.callback_url is not None:
        body["webhook"] = request.callback_url
    return body


def update_from_payload(payload: LocalJobPayload) -> ProviderUpdate:
    """SUCCEEDED and FAILED are terminal; QUEUED, RUNNING and anything else is running."""
    status = payload.status.strip().upper()
    common: dict[str, Any] = {
        "provider": NAME,
        "provider_job_id": payload.id,
        "raw": payload.raw,
    }
    if status == SUCCEEDED:
        if payload.result_url is None:
            return ProviderUpdate(
                status=UpdateStatus.FAILED,
                failure=Failure(
                    FailureReason.PROVIDER_FAILED,
                    "the local provider reported SUCCEEDED with no result URL",
                ),
                **common,
            )
        return ProviderUpdate(
            status=UpdateStatus.SUCCEEDED, result_url=payload.result_url, **common
        )
    if status == FAILED:
        reason = (
            FailureReason.REJECTED_INPUT
            if payload.error_code in INPUT_ERROR_CODES
            else FailureReason.PROVIDER_FAILED
        )
        message = payload.error_message or "the local provider reported FAILED"
        return ProviderUpdate(
            status=UpdateStatus.FAILED, failure=Failure(reason, message), **common
        )
    return ProviderUpdate(status=UpdateStatus.RUNNING, **common)


def parse_callback_body(body: bytes) -> ProviderUpdate:
    """A webhook body to an update; raises only :class:`RejectedPayload`."""
    return update_from_payload(parse_local_payload(decode_json(body)))


# --- answers -------------------------------------------------------------------------


def _error(body: bytes, status_code: int) -> tuple[str | None, str]:
    """``(code, message)`` of an error answer, whatever its shape."""
    try:
        decoded = decode_json(body)
    except RejectedPayload:
        decoded = None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    return error_code(error), readable_error(error) or body_excerpt(body) or f"HTTP {status_code}"


def _classify_error(
    status_code: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None
) -> ProviderError:
    code, msg = _error(body, status_code)
    if status_code in (400, 413):
        return ProviderRejected(
            f"the local provider rejected the request ({code or status_code}): {msg}",
            FailureReason.REJECTED_INPUT,
        )
    if status_code == 401:
        return ProviderRejected(
            f"the local provider refused the API key: {msg}", FailureReason.PROVIDER_AUTH
        )
    if status_code == 429:
        return ProviderThrottled(
            f"the local provider is busy: {msg}", parse_retry_after(headers, now=now)
        )
    return answered("the local provider", status_code, msg)


def classify_submit(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
) -> Accepted:
    """Map the answer to ``POST /api/v1/upscale`` to :class:`Accepted` or a ``ProviderError``."""
    if not 200 <= status_code <= 299:
        if status_code == 504:
            raise ProviderUncertain(
                "a gateway timed out in front of the local provider (HTTP 504); the job may exist"
            )
        raise _classify_error(status_code, headers, body, now=now)
    try:
        payload = parse_local_payload(decode_json(body))
    except RejectedPayload as exc:
        raise ProviderUncertain(
            f"the local provider answered HTTP {status_code} with an unreadable body "
            f"({exc.message}); the job may exist"
        ) from exc
    update = None
    if payload.status.strip().upper() in (SUCCEEDED, FAILED):
        update = update_from_payload(payload)
    return Accepted(provider_job_id=payload.id, update=update)


def classify_status(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    job_id: str | None = None,
    now: datetime | None = None,
) -> ProviderUpdate:
    """Map the answer to ``GET /api/v1/jobs/{id}`` to a :class:`ProviderUpdate`.

    A 404 is a FAILED update; a 2xx that cannot be read, or that names another job,
    is ``ProviderUnavailable`` (ask again).
    """
    if status_code == 404:
        return ProviderUpdate(
            provider=NAME,
            provider_job_id=job_id,
            status=UpdateStatus.FAILED,
            failure=Failure(
                FailureReason.PROVIDER_FAILED,
                "the local provider does not know the job (HTTP 404; it may have restarted): "
                + _error(body, 404)[1],
            ),
        )
    if not 200 <= status_code <= 299:
        raise _classify_error(status_code, headers, body, now=now)
    try:
        payload = parse_local_payload(decode_json(body))
    except RejectedPayload as exc:
        raise ProviderUnavailable(
            f"the local provider answered HTTP {status_code} with an unreadable status "
            f"({exc.message})"
        ) from exc
    if job_id is not None and payload.id != job_id:
        raise ProviderUnavailable("the local provider answered the status of a different job")
    return update_from_payload(payload)


def job_path(provider_job_id: str) -> str:
    """``/api/v1/jobs/{id}`` with the id quoted so it stays one path segment."""
    return f"/api/v1/jobs/{path_segment(provider_job_id)}"


# --- I/O -----------------------------------------------------------------------------


class LocalProvider:
    """The local provider behind the :class:`~orchestrator.providers.base.Provider` protocol."""

    name: str = NAME
    callback_mode: CallbackMode = "job"
    needs_image_url: bool = False
    operations: frozenset[Operation] = frozenset({Operation.UPSCALE, Operation.REPLACE})

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        engines: list[str],
        submit_timeout_s: float = 120,
        poll_timeout_s: float = 30,
        clock: Clock | None = None,
    ) -> None:
        self._api = JsonApi(
            client,
            label="the local provider",
            base_url=base_url,
            auth={"Authorization": f"Bearer {api_key}"},
            max_bytes=MAX_RESPONSE_BYTES,
        )
        if not (submit_timeout_s > 0 and poll_timeout_s > 0):
            raise ValueError("timeouts must be positive")
        if not engines:
            raise ValueError("engines must name at least one engine")
        self.engines = list(engines)
        self._submit_timeout_s = float(submit_timeout_s)
        self._poll_timeout_s = float(poll_timeout_s)
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"LocalProvider(base_url={self._api.base_url!r}, api_key='***')"

    def validate_options(
        self, scale: float, options: dict[str, Any], *, operation: Operation = Operation.UPSCALE
    ) -> dict[str, Any]:
        if operation is Operation.REPLACE:
            if options:
                names = ", ".join(sorted(options))
                raise RejectedInput(f"the local provider's replace takes no options (got {names})")
            return {}
        return validate_local_options(scale, options, self.engines)

    async def submit(self, request: SubmitRequest) -> Accepted:
        options: dict[str, Any] = {}
        if request.operation is not Operation.REPLACE:  # a replace has no scale nor engine
            try:
                options = validate_local_options(request.scale, request.options, self.engines)
            except RejectedInput as exc:
                raise ProviderRejected(exc.message, FailureReason.REJECTED_INPUT) from exc
        answer = await self._api.submit(
            "/api/v1/upscale",
            build_submit_body(request, options),
            self._submit_timeout_s,
            sent="job",
            not_sent="no job was created",
            unknown="the job may exist",
        )
        return classify_submit(
            answer.status_code, answer.headers, answer.body, now=self._clock.now()
        )

    async def poll(self, provider_job_id: str) -> ProviderUpdate:
        answer = await self._api.get(
            job_path(provider_job_id),
            self._poll_timeout_s,
            what="the job status",
            too_large=(
                f"the local provider's status answer is larger than {MAX_RESPONSE_BYTES} bytes"
            ),
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

    def _conforms(provider: LocalProvider) -> Provider:
        return provider
