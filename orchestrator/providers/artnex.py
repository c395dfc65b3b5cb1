"""The Artnex adapter (``POST https://api.artnex.ai/v1/upscale``).

Synchronous provider: the answer to the one POST is the outcome,
``{"success": true, "image_url", "request_id", "credits_used"}`` with a result
URL valid for 24 h, or ``{"success": false, "error": "<code>", "message"}``.
There is no webhook and no status endpoint. See providers.md section 4.

The decisions are pure functions (:func:`validate_artnex_options`,
:func:`image_field`, :func:`build_submit_body`, :func:`classify_submit`);
:class:`ArtnexProvider` only does the I/O and translates ``httpx`` errors at the
boundary.

Where the documentation is silent:

- ``scale``: "number, common values 2, 4"; we accept any number from 2 to 4
  (``MIN_SCALE``..``MAX_SCALE``) and send integral values as integers. Artnex
  takes no other options.
- The image is sent as the job's URL, or as a ``data:image/<png|jpeg|webp>;base64,``
  URI of the uploaded bytes. Other formats and files over 10 MB (read as
  10,000,000 bytes, the stricter reading) are refused before sending.
- The error *code* decides the reason when we know it, whatever the HTTP status
  (``success: false`` inside a 200 included): ``missing_image``,
  ``invalid_image_format``, ``image_too_large``, ``invalid_scale`` ->
  ``rejected_input``; ``invalid_api_key`` -> ``provider_auth``;
  ``insufficient_credits`` -> ``insufficient_credit``; ``rate_limit_exceeded``
  -> ``ProviderThrottled``. Otherwise the HTTP status decides: 400/413/422
  ``rejected_input``, 401/403 ``provider_auth``, 402 ``insufficient_credit``,
  429 throttled, anything else inside a 2xx or another 4xx ``provider_failed``.
- 429 is a *daily* quota over a rolling 24 h window: with ``Retry-After`` we
  wait what it says (capped at 1 h per attempt, like every adapter); without it
  we wait ``DEFAULT_QUOTA_RETRY_AFTER_S`` = 3600 s, not seconds.
- 5xx: a 500 is ``ProviderRejected(provider_failed)``, not retried (the work may
  have been done and billed; there is no idempotency key); 503 and 408 are
  ``ProviderUnavailable`` (retryable); a gateway 502/504 and other 5xx are
  ``ProviderUncertain``.
- A 2xx that is unreadable, has no ``success`` flag, or says ``success: true``
  without an http(s) ``image_url`` is ``ProviderRejected(result_invalid)``: the
  call was answered and maybe billed, so it is final.
- ``provider_job_id`` is ``request_id``, else ``artnex-`` + 24 hex digits of the
  SHA-256 of our job id and the answer (unique per submit: the same input twice
  may get the same answer); the cost is ``credits_used`` when given (never assumed).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import httpx

from orchestrator.common.clock import Clock, SystemClock
from orchestrator.fetch.imagecheck import CONTENT_TYPES, SNIFF_BYTES, sniff_format
from orchestrator.providers.base import (
    Accepted,
    CallbackMode,
    SubmitRequest,
    refuse_other_operations,
)
from orchestrator.providers.http import JsonApi, parse_retry_after
from orchestrator.providers.synchronous import BILLED, answer_id, result_invalid, server_trouble
from schemas.artnex import ArtnexAnswer, parse_artnex_answer
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    RejectedInput,
    RejectedPayload,
)
from schemas.jobs import FailureReason, Operation, ProviderUpdate, UpdateStatus
from schemas.payloads import MAX_PAYLOAD_BYTES, body_excerpt, decode_json, json_number

if TYPE_CHECKING:
    from orchestrator.providers.base import Provider

NAME: Final = "artnex"
SUBMIT_PATH: Final = "/v1/upscale"

MAX_RESPONSE_BYTES = MAX_PAYLOAD_BYTES
MAX_IMAGE_BYTES = 10_000_000
MIN_SCALE: Final = 2.0
MAX_SCALE: Final = 4.0
DEFAULT_QUOTA_RETRY_AFTER_S = 3600.0
IMAGE_FORMATS: Final = ("jpeg", "png", "webp")

ERROR_REASONS: Final[Mapping[str, FailureReason]] = {
    "missing_image": FailureReason.REJECTED_INPUT,
    "invalid_image_format": FailureReason.REJECTED_INPUT,
    "image_too_large": FailureReason.REJECTED_INPUT,
    "invalid_scale": FailureReason.REJECTED_INPUT,
    "invalid_api_key": FailureReason.PROVIDER_AUTH,
    "insufficient_credits": FailureReason.INSUFFICIENT_CREDIT,
}
RATE_LIMITED: Final = "rate_limit_exceeded"

_RESERVED: Final[Mapping[str, str]] = {
    "image": "the image comes from the job's image",
    "scale": "the factor comes from the job's scale",
}


# --- request -------------------------------------------------------------------------


def validate_artnex_options(scale: float, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``scale`` (a number from 2 to 4); Artnex takes no options.

    Raises :class:`RejectedInput` naming the problem.
    """
    if not isinstance(options, Mapping):
        raise RejectedInput("options must be a JSON object")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise RejectedInput("scale must be a number")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise RejectedInput(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g} for Artnex")
    for key in options:
        if key in _RESERVED:
            raise RejectedInput(f"unknown option '{key}': {_RESERVED[key]}")
        raise RejectedInput(f"unknown option '{key}': Artnex takes no options")
    return {}


def image_field(request: SubmitRequest) -> str:
    """The ``image`` value: a data URI of the uploaded bytes, else the image URL.

    Raises :class:`RejectedInput` for bytes over :data:`MAX_IMAGE_BYTES`, bytes that
    are not JPEG, PNG or WebP, and a request with neither bytes nor URL.
    """
    data = request.image_bytes
    if data:
        if len(data) > MAX_IMAGE_BYTES:
            raise RejectedInput(
                f"Artnex takes images of at most {MAX_IMAGE_BYTES} bytes; this one has {len(data)}"
            )
        fmt = sniff_format(data[:SNIFF_BYTES])
        if fmt not in IMAGE_FORMATS:
            raise RejectedInput(
                f"Artnex takes JPEG, PNG or WebP images; this one is {fmt or 'not recognised'}"
            )
        encoded = base64.b64encode(data).decode("ascii")
        return f"data:{CONTENT_TYPES[fmt]};base64,{encoded}"
    if request.image_url:
        return request.image_url
    raise RejectedInput("Artnex needs the image bytes or an image URL")


def build_submit_body(request: SubmitRequest) -> dict[str, Any]:
    """The JSON body of the upscale POST (``scale`` sent as an int when integral)."""
    return {"image": image_field(request), "scale": json_number(request.scale)}


# --- answers -------------------------------------------------------------------------


def quota_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float:
    """Seconds to wait after a 429: ``Retry-After`` if sent, else one hour."""
    return parse_retry_after(headers, now=now, missing=DEFAULT_QUOTA_RETRY_AFTER_S)


def _read(body: bytes) -> ArtnexAnswer | None:
    try:
        return parse_artnex_answer(decode_json(body))
    except RejectedPayload:
        return None


def _error(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    answer: ArtnexAnswer | None,
    *,
    now: datetime | None,
) -> ProviderError:
    code = answer.error if answer is not None else None
    text = answer.message if answer is not None else body_excerpt(body)
    msg = f"{code}: {text}" if code and text else (code or text or "no message")
    where = f"HTTP {status_code}"
    if code == RATE_LIMITED or status_code == 429:
        return ProviderThrottled(
            f"Artnex daily quota exceeded ({where}): {msg}", quota_retry_after(headers, now=now)
        )
    reason = ERROR_REASONS.get(code or "")
    if reason is None:
        if status_code in (400, 413, 422):
            reason = FailureReason.REJECTED_INPUT
        elif status_code in (401, 403):
            reason = FailureReason.PROVIDER_AUTH
        elif status_code == 402:
            reason = FailureReason.INSUFFICIENT_CREDIT
        elif status_code == 500:
            return ProviderRejected(
                f"Artnex reported a server error ({where}): {msg}; not retried, {BILLED}",
                FailureReason.PROVIDER_FAILED,
            )
        elif (trouble := server_trouble("Artnex", status_code, msg)) is not None:
            return trouble
        else:
            reason = FailureReason.PROVIDER_FAILED
    return ProviderRejected(f"Artnex refused the request ({where}): {msg}", reason)


def classify_submit(
    submit_id: str,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
) -> Accepted:
    """Map the answer to the upscale POST for our job ``submit_id`` to
    :class:`Accepted` or a ``ProviderError``.

    On success the :class:`Accepted` carries a SUCCEEDED update with the result
    URL. See the module docstring for every other outcome.
    """
    answer = _read(body)
    if not 200 <= status_code <= 299:
        raise _error(status_code, headers, body, answer, now=now)
    if answer is None:
        raise result_invalid(f"Artnex answered HTTP {status_code} with an unreadable body")
    if answer.success is not True:
        if answer.success is False or answer.error is not None:
            raise _error(status_code, headers, body, answer, now=now)
        raise result_invalid(f"Artnex answered HTTP {status_code} without a success flag")
    url = answer.image_url
    if url is None or not url.lower().startswith(("https://", "http://")):
        raise result_invalid("Artnex reported success without an http(s) image_url")
    job_id = answer.request_id or answer_id(NAME, submit_id, body)
    update = ProviderUpdate(
        provider=NAME,
        provider_job_id=job_id,
        status=UpdateStatus.SUCCEEDED,
        result_url=url,
        cost=answer.credits_used,
        raw=answer.raw,
    )
    return Accepted(provider_job_id=job_id, cost=answer.credits_used, update=update)


# --- I/O -----------------------------------------------------------------------------


class ArtnexProvider:
    """Artnex behind the :class:`~orchestrator.providers.base.Provider` protocol."""

    name: str = NAME
    callback_mode: CallbackMode = "none"
    needs_image_url: bool = False
    operations: frozenset[Operation] = frozenset({Operation.UPSCALE})

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        submit_timeout_s: float = 300,
        clock: Clock | None = None,
    ) -> None:
        self._api = JsonApi(
            client,
            label="Artnex",
            base_url=base_url,
            auth={"Authorization": f"Bearer {api_key}"},
            max_bytes=MAX_RESPONSE_BYTES,
        )
        if not submit_timeout_s > 0:
            raise ValueError("submit_timeout_s must be positive")
        self._submit_timeout_s = float(submit_timeout_s)
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"ArtnexProvider(base_url={self._api.base_url!r}, api_key='***')"

    def validate_options(
        self, scale: float, options: dict[str, Any], *, operation: Operation = Operation.UPSCALE
    ) -> dict[str, Any]:
        refuse_other_operations("Artnex", operation)
        return validate_artnex_options(scale, options)

    async def submit(self, request: SubmitRequest) -> Accepted:
        try:
            validate_artnex_options(request.scale, request.options)
            body = build_submit_body(request)
        except RejectedInput as exc:
            raise ProviderRejected(exc.message, FailureReason.REJECTED_INPUT) from exc
        answer = await self._api.submit(
            SUBMIT_PATH,
            body,
            self._submit_timeout_s,
            sent="image",
            not_sent="nothing was sent",
            unknown=BILLED,
            too_large=(
                f"Artnex's answer is larger than {MAX_RESPONSE_BYTES} bytes and was not read; "
                f"the image may have been made and {BILLED}"
            ),
        )
        return classify_submit(
            request.job_id, answer.status_code, answer.headers, answer.body, now=self._clock.now()
        )

    async def poll(self, provider_job_id: str) -> ProviderUpdate:
        raise ProviderRejected(
            "Artnex is synchronous and has no status endpoint: the result URL came with the "
            "submit answer, and an expired (24 h) URL cannot be refreshed",
            FailureReason.PROVIDER_FAILED,
        )

    def parse_callback(self, body: bytes) -> ProviderUpdate:
        raise RejectedPayload("Artnex sends no callbacks")


if TYPE_CHECKING:

    def _conforms(provider: ArtnexProvider) -> Provider:
        return provider
