"""The Fotor OpenAPI adapter (``https://api-b.fotor.com``), AI Upscaler only.

Asynchronous provider: ``POST /v1/aiart/imgupscale`` answers a ``taskId``; the
outcome comes from the account-wide webhook (one URL for the whole account, set
out of band, so no callback field is sent) and/or ``GET /v1/aiart/tasks/{taskId}``.
Every answer is the ``{code, msg, data}`` envelope, and ``code != "000"`` inside
an HTTP 200 is an error. See providers.md section 1.

The decisions are pure functions (:func:`validate_fotor_options`,
:func:`build_submit_body`, :func:`classify_submit`, :func:`classify_task`,
:func:`classify_credits`, :func:`update_from_task`, :func:`rewrite_result_url`);
:class:`FotorProvider` only does the I/O and translates ``httpx`` errors at the
boundary.

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
- Inline image bytes are sent as a data URI whose type is sniffed from the magic
  bytes (PNG when unrecognised, as Fotor's own code sends).
- ``upscaling_resize`` is sent as an integer when the scale is integral (the
  documented type), as a float otherwise (Fotor's SDK sends floats).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx

from orchestrator.clock import Clock, SystemClock
from orchestrator.fetch.imagecheck import MEDIA_TYPES, sniff_image
from orchestrator.providers.base import Accepted, CallbackMode, SubmitRequest
from orchestrator.providers.http import (
    JsonApi,
    answered,
    http_base_url,
    parse_retry_after,
    path_segment,
)
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
    RejectedInput,
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
from schemas.payloads import MAX_PAYLOAD_BYTES, decode_json, error_message, json_number

if TYPE_CHECKING:
    from orchestrator.providers.base import HasBalance, Provider

NAME: Final = "fotor"

DEFAULT_BASE_URL: Final = "https://api-b.fotor.com"
DEFAULT_S3_BASE_URL: Final = "https://pub-static.fotor.com"
S3_PREFIX: Final = "s3://img-pub-fotor/"

SUBMIT_PATH: Final = "/v1/aiart/imgupscale"
TASKS_PATH: Final = "/v1/aiart/tasks/"
CREDITS_PATH: Final = "/v1/credits"

MAX_RESPONSE_BYTES = MAX_PAYLOAD_BYTES
DEFAULT_RETRY_AFTER_S = 30.0

MIN_SCALE: Final = 1.0
MAX_SCALE: Final = 4.0
MIN_SIDE: Final = 64
MAX_SIDE: Final = 8192
DEFAULT_MAX_SIDE: Final = 2048
OPTIONS: Final = ("max_image_width", "max_image_height")
_RESERVED: Final[Mapping[str, str]] = {
    "userImageUrl": "the image comes from the job's image",
    "upscaling_resize": "the factor comes from the job's scale",
}

Call = Literal["submit", "poll", "credits"]


# --- options -------------------------------------------------------------------------


def _side(key: str, value: object) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
        raise RejectedInput(f"option '{key}' must be an integer from {MIN_SIDE} to {MAX_SIDE}")
    return value


def validate_fotor_options(
    scale: float,
    options: Mapping[str, Any],
    *,
    default_width: int = DEFAULT_MAX_SIDE,
    default_height: int = DEFAULT_MAX_SIDE,
) -> dict[str, Any]:
    """Check ``scale`` (1..4) and ``options``; return both size caps, defaults filled in.

    Raises :class:`RejectedInput` naming the offending key.
    """
    if not isinstance(options, Mapping):
        raise RejectedInput("options must be a JSON object")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise RejectedInput("scale must be a number")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise RejectedInput(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g} for Fotor")
    for key in options:
        if key in _RESERVED:
            raise RejectedInput(f"unknown option '{key}': {_RESERVED[key]}")
        if key not in OPTIONS:
            raise RejectedInput(f"unknown option '{key}' (known: {', '.join(OPTIONS)})")
    return {
        "max_image_width": _side("max_image_width", options.get("max_image_width", default_width)),
        "max_image_height": _side(
            "max_image_height", options.get("max_image_height", default_height)
        ),
    }


# --- submit body ---------------------------------------------------------------------


def sniff_image_type(data: bytes) -> str:
    """The image media type from magic bytes; ``image/png`` when unrecognised."""
    return MEDIA_TYPES.get(sniff_image(data) or "", "image/png")


def image_data_uri(data: bytes) -> str:
    """``data:<type>;base64,<data>`` for inline image bytes."""
    return f"data:{sniff_image_type(data)};base64,{base64.b64encode(data).decode('ascii')}"


def build_submit_body(request: SubmitRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /v1/aiart/imgupscale``.

    ``options`` are normalised (see :func:`validate_fotor_options`). Inline bytes
    win over a URL. Raises :class:`ProviderRejected` (``rejected_input``) when the
    request carries no image at all.
    """
    if request.image_bytes:
        image = image_data_uri(request.image_bytes)
    elif request.image_url:
        image = request.image_url
    else:
        raise ProviderRejected("Fotor needs an image URL or image bytes", "rejected_input")
    return {
        "upscaling_resize": json_number(request.scale),
        "userImageUrl": image,
        "max_image_width": options["max_image_width"],
        "max_image_height": options["max_image_height"],
    }


# --- answers -------------------------------------------------------------------------


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
    """Map the answer to the upscale POST to :class:`Accepted` or a ``ProviderError``.

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


def task_path(task_id: str) -> str:
    """``/v1/aiart/tasks/{id}`` with the id quoted so it stays one path segment."""
    return TASKS_PATH + path_segment(task_id)


# --- I/O -----------------------------------------------------------------------------


class FotorProvider:
    """Fotor behind the :class:`~orchestrator.providers.base.Provider` protocol."""

    name: str = NAME
    callback_mode: CallbackMode = "account"
    needs_image_url: bool = False

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        max_image_width: int = DEFAULT_MAX_SIDE,
        max_image_height: int = DEFAULT_MAX_SIDE,
        s3_base_url: str = DEFAULT_S3_BASE_URL,
        submit_timeout_s: float = 60,
        poll_timeout_s: float = 30,
        clock: Clock | None = None,
    ) -> None:
        self._api = JsonApi(
            client,
            label="Fotor",
            base_url=base_url,
            auth={"Authorization": f"Bearer {api_key}"},
            max_bytes=MAX_RESPONSE_BYTES,
        )
        self._s3_base_url = http_base_url(s3_base_url, "s3_base_url")
        if not (submit_timeout_s > 0 and poll_timeout_s > 0):
            raise ValueError("timeouts must be positive")
        try:
            self._max_width = _side("max_image_width", max_image_width)
            self._max_height = _side("max_image_height", max_image_height)
        except RejectedInput as exc:
            raise ValueError(exc.message) from None
        self._submit_timeout_s = float(submit_timeout_s)
        self._poll_timeout_s = float(poll_timeout_s)
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"FotorProvider(base_url={self._api.base_url!r}, api_key='***')"

    def validate_options(self, scale: float, options: dict[str, Any]) -> dict[str, Any]:
        return validate_fotor_options(
            scale, options, default_width=self._max_width, default_height=self._max_height
        )

    async def submit(self, request: SubmitRequest) -> Accepted:
        try:
            options = self.validate_options(request.scale, request.options)
        except RejectedInput as exc:
            raise ProviderRejected(exc.message, FailureReason.REJECTED_INPUT) from exc
        answer = await self._api.submit(
            SUBMIT_PATH,
            build_submit_body(request, options),
            self._submit_timeout_s,
            sent="task",
            not_sent="no task was created",
            unknown="the task may exist and be billed",
        )
        return classify_submit(
            answer.status_code, answer.headers, answer.body, now=self._clock.now()
        )

    async def poll(self, provider_job_id: str) -> ProviderUpdate:
        answer = await self._api.get(
            task_path(provider_job_id), self._poll_timeout_s, what="the task details"
        )
        return classify_task(
            answer.status_code,
            answer.headers,
            answer.body,
            task_id=provider_job_id,
            s3_base_url=self._s3_base_url,
            now=self._clock.now(),
        )

    async def balance(self) -> dict[str, Any]:
        """``{"business_id", "total", "remaining"}`` from ``GET /v1/credits``."""
        answer = await self._api.get(CREDITS_PATH, self._poll_timeout_s, what="the credit balance")
        return classify_credits(
            answer.status_code, answer.headers, answer.body, now=self._clock.now()
        )

    def parse_callback(self, body: bytes) -> ProviderUpdate:
        return parse_callback_body(body, s3_base_url=self._s3_base_url)


if TYPE_CHECKING:

    def _conforms(provider: FotorProvider) -> Provider:
        return provider

    def _has_balance(provider: FotorProvider) -> HasBalance:
        return provider
