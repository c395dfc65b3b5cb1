"""The Photio adapter (``POST https://api.photio.io/v1/inference/upscale``).

Synchronous provider: the answer to the one POST carries the upscaled image as
base64 (``{"status_code": 200, "body": "<base64>"}``). There is no job id, no
webhook and no status endpoint. See providers.md section 3.

The decisions are pure functions (:func:`validate_photio_options`,
:func:`build_submit_body`, :func:`classify_submit`); :class:`PhotioProvider`
only does the I/O and translates ``httpx`` errors at the boundary.

Where the documentation is silent:

- Success needs HTTP 2xx **and** ``status_code == 200`` **and** a ``body`` that
  decodes (optional ``data:*;base64,`` prefix stripped) to bytes whose magic
  says image. The provider job id is synthesized: ``photio-`` + the first 24 hex
  digits of the SHA-256 of our job id and the whole answer, so that two jobs with
  the same answer (the same input twice) keep ids of their own.
- A 2xx whose body is unreadable, lacks ``status_code``, or carries no usable
  image is ``ProviderRejected(result_invalid)``: the call was answered (and maybe
  billed), so it is final; resubmitting is the user's decision, not ours.
- ``status_code`` in the body and the HTTP status are read alike: 401/403 are
  ``provider_auth``; 402, or any refusal that mentions credit/balance/payment, is
  ``insufficient_credit``; 400/413/422 are ``rejected_input``; 429 is
  ``ProviderThrottled`` (``Retry-After``, else 60 s).
- A 500 (HTTP or in the body) is ``ProviderRejected(provider_failed)``, not a
  retry: Photio documents 500 as an "API problem" that may come after the work
  (and the charge) was done, and there is no idempotency key. A 503 (service not
  taking requests) and a 408 are ``ProviderUnavailable`` (retryable); a gateway
  502/504 and other 5xx are ``ProviderUncertain`` (the origin may have done the
  work). Any other 5xx *inside* a 2xx body is Photio's own explicit error:
  ``provider_failed``.
- An answer over ``max_response_bytes`` (default 64 MiB) is ``ProviderUncertain``:
  the image was made and probably billed, but we could not take it.
- Options: ``prompt``/``negative_prompt`` at most 2000 characters (undocumented
  limit, ours); ``quality`` is case-insensitive and sent upper-case.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import httpx

from orchestrator.common.clock import Clock, SystemClock
from orchestrator.fetch.imagecheck import SNIFF_BYTES, sniff_format
from orchestrator.providers.base import (
    Accepted,
    CallbackMode,
    SubmitRequest,
    refuse_other_operations,
)
from orchestrator.providers.http import JsonApi, http_base_url, parse_retry_after
from orchestrator.providers.synchronous import BILLED, answer_id, result_invalid, server_trouble
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    RejectedInput,
    RejectedPayload,
)
from schemas.jobs import FailureReason, Operation, ProviderUpdate, UpdateStatus
from schemas.payloads import MAX_PAYLOAD_BYTES, body_excerpt, decode_json
from schemas.photio import PhotioAnswer, decode_image_body, parse_photio_answer

if TYPE_CHECKING:
    from orchestrator.providers.base import Provider

NAME: Final = "photio"
SUBMIT_PATH: Final = "/v1/inference/upscale"
AUTH_HEADER: Final = "X-Photio-Key"

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
SCALES: Final = (2, 4)
QUALITIES: Final = ("LOW", "MIDDLE", "HIGH")
MAX_PROMPT_CHARS = 2000

_TEXT_OPTIONS: Final = ("prompt", "negative_prompt")
_KNOWN: Final = (*_TEXT_OPTIONS, "quality", "denoising_strength")
_RESERVED: Final[Mapping[str, str]] = {
    "image": "the image comes from the job's image",
    "upscale_by": "the factor comes from the job's scale",
}
_CREDIT_WORDS = re.compile(r"credit|balance|payment|insufficient fund", re.IGNORECASE)


# --- options -------------------------------------------------------------------------


def validate_photio_options(scale: float, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``scale`` (2 or 4) and ``options``; return normalised options.

    Known options: ``prompt``, ``negative_prompt`` (strings), ``quality``
    (``LOW``/``MIDDLE``/``HIGH``, any case, returned upper-case) and
    ``denoising_strength`` (a number from 0 to 1, returned as a float). Raises
    :class:`RejectedInput` naming the offending key.
    """
    if not isinstance(options, Mapping):
        raise RejectedInput("options must be a JSON object")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale not in SCALES:
        raise RejectedInput("scale must be 2 or 4 for Photio")
    normalised: dict[str, Any] = {}
    for key, value in options.items():
        if key in _RESERVED:
            raise RejectedInput(f"unknown option '{key}': {_RESERVED[key]}")
        if key in _TEXT_OPTIONS:
            if not isinstance(value, str):
                raise RejectedInput(f"option '{key}' must be a string")
            if len(value) > MAX_PROMPT_CHARS:
                raise RejectedInput(f"option '{key}' must be at most {MAX_PROMPT_CHARS} characters")
            normalised[key] = value
        elif key == "quality":
            if not isinstance(value, str) or value.upper() not in QUALITIES:
                raise RejectedInput(f"option 'quality' must be one of: {', '.join(QUALITIES)}")
            normalised[key] = value.upper()
        elif key == "denoising_strength":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 <= value <= 1
            ):
                raise RejectedInput("option 'denoising_strength' must be a number from 0 to 1")
            normalised[key] = float(value)
        else:
            raise RejectedInput(f"unknown option '{key}' (known: {', '.join(_KNOWN)})")
    return normalised


def build_submit_body(request: SubmitRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of the upscale POST: the image (base64 of the bytes, else the URL)."""
    if request.image_bytes:
        image = base64.b64encode(request.image_bytes).decode("ascii")
    elif request.image_url:
        image = request.image_url
    else:
        raise ProviderRejected(
            "Photio needs the image bytes or an image URL", FailureReason.REJECTED_INPUT
        )
    return {"image": image, "upscale_by": int(request.scale), **options}


# --- answers -------------------------------------------------------------------------


def _error_message(body: bytes, status_code: int) -> str:
    try:
        answer: PhotioAnswer | None = parse_photio_answer(decode_json(body))
    except RejectedPayload:
        answer = None
    text = answer.message if answer is not None else body_excerpt(body)
    return text or f"HTTP {status_code}"


def _refusal(
    code: int,
    msg: str,
    headers: Mapping[str, str],
    *,
    now: datetime | None,
    where: str,
) -> ProviderError | None:
    """The error for a refusal code common to the HTTP status and ``status_code``."""
    if code == 402 or (code in (400, 403) and _CREDIT_WORDS.search(msg)):
        return ProviderRejected(
            f"Photio refused the call for lack of credit ({where} {code}): {msg}",
            FailureReason.INSUFFICIENT_CREDIT,
        )
    if code in (401, 403):
        return ProviderRejected(
            f"Photio refused the API key ({where} {code}): {msg}", FailureReason.PROVIDER_AUTH
        )
    if code in (400, 413, 422):
        return ProviderRejected(
            f"Photio rejected the request ({where} {code}): {msg}", FailureReason.REJECTED_INPUT
        )
    if code == 429:
        return ProviderThrottled(
            f"Photio rate limit exceeded ({where} {code}): {msg}",
            parse_retry_after(headers, now=now),
        )
    if code == 500:
        return ProviderRejected(
            f"Photio reported an API problem ({where} 500): {msg}; not retried, {BILLED}",
            FailureReason.PROVIDER_FAILED,
        )
    return None


def _http_error(
    status_code: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None
) -> ProviderError:
    msg = _error_message(body, status_code)
    known = _refusal(status_code, msg, headers, now=now, where="HTTP")
    if known is None:
        known = server_trouble("Photio", status_code, msg)
    if known is not None:
        return known
    return ProviderRejected(
        f"Photio answered HTTP {status_code}: {msg}", FailureReason.PROVIDER_FAILED
    )


def classify_submit(
    submit_id: str,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Accepted:
    """Map the answer to the upscale POST for our job ``submit_id`` to
    :class:`Accepted` or a ``ProviderError``.

    On success the :class:`Accepted` carries a SUCCEEDED update with the decoded
    image in ``result_bytes``. See the module docstring for every other outcome.
    """
    if not 200 <= status_code <= 299:
        raise _http_error(status_code, headers, body, now=now)
    try:
        answer = parse_photio_answer(decode_json(body, max_bytes=max_bytes))
    except RejectedPayload as exc:
        raise result_invalid(
            f"Photio answered HTTP {status_code} with an unreadable body ({exc.message})"
        ) from exc
    code = answer.status_code
    if code is None:
        raise result_invalid(f"Photio answered HTTP {status_code} without a usable status_code")
    if code != 200:
        msg = answer.message or "no message"
        known = _refusal(code, msg, headers, now=now, where="status_code")
        if known is not None:
            raise known
        raise ProviderRejected(
            f"Photio reported status_code {code}: {msg}", FailureReason.PROVIDER_FAILED
        )
    if answer.body is None:
        raise result_invalid("Photio reported success without an image body")
    try:
        image = decode_image_body(answer.body)
    except RejectedPayload as exc:
        raise result_invalid(f"Photio's image body does not decode ({exc.message})") from exc
    if sniff_format(image[:SNIFF_BYTES]) is None:
        raise result_invalid("Photio's image body is not an image we recognise")
    job_id = answer_id(NAME, submit_id, body)
    update = ProviderUpdate(
        provider=NAME,
        provider_job_id=job_id,
        status=UpdateStatus.SUCCEEDED,
        result_bytes=image,
        raw=answer.raw,
    )
    return Accepted(provider_job_id=job_id, cost=None, update=update)


# --- I/O -----------------------------------------------------------------------------


class PhotioProvider:
    """Photio behind the :class:`~orchestrator.providers.base.Provider` protocol."""

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
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        submit_timeout_s: float = 300,
        clock: Clock | None = None,
    ) -> None:
        base_url = http_base_url(base_url)
        if not submit_timeout_s > 0:
            raise ValueError("submit_timeout_s must be positive")
        if max_response_bytes < MAX_PAYLOAD_BYTES:
            raise ValueError(f"max_response_bytes must be at least {MAX_PAYLOAD_BYTES}")
        self._api = JsonApi(
            client,
            label="Photio",
            base_url=base_url,
            auth={AUTH_HEADER: api_key},
            max_bytes=int(max_response_bytes),
        )
        self._submit_timeout_s = float(submit_timeout_s)
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"PhotioProvider(base_url={self._api.base_url!r}, api_key='***')"

    def validate_options(
        self, scale: float, options: dict[str, Any], *, operation: Operation = Operation.UPSCALE
    ) -> dict[str, Any]:
        refuse_other_operations("Photio", operation)
        return validate_photio_options(scale, options)

    async def submit(self, request: SubmitRequest) -> Accepted:
        try:
            options = validate_photio_options(request.scale, request.options)
        except RejectedInput as exc:
            raise ProviderRejected(exc.message, FailureReason.REJECTED_INPUT) from exc
        max_bytes = self._api.max_bytes
        answer = await self._api.submit(
            SUBMIT_PATH,
            build_submit_body(request, options),
            self._submit_timeout_s,
            sent="image",
            not_sent="nothing was sent",
            unknown=BILLED,
            too_large=(
                f"Photio's answer is larger than {max_bytes} bytes and was "
                f"not read; the image was probably made and {BILLED}"
            ),
        )
        return classify_submit(
            request.job_id,
            answer.status_code,
            answer.headers,
            answer.body,
            now=self._clock.now(),
            max_bytes=max_bytes,
        )

    async def poll(self, provider_job_id: str) -> ProviderUpdate:
        raise ProviderRejected(
            "Photio is synchronous and has no status endpoint: the result comes with the "
            "submit answer and cannot be asked for again",
            FailureReason.PROVIDER_FAILED,
        )

    def parse_callback(self, body: bytes) -> ProviderUpdate:
        raise RejectedPayload("Photio sends no callbacks")


if TYPE_CHECKING:

    def _conforms(provider: PhotioProvider) -> Provider:
        return provider
