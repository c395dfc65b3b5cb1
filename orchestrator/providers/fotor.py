"""The Fotor OpenAPI adapter (``https://api-b.fotor.com``): AI Upscaler and AI Replace.

Asynchronous provider: ``POST /v1/aiart/imgupscale`` (upscale) or
``POST /v1/aiart/replacer`` (replace) answers a ``taskId``; the outcome comes from
the account-wide webhook (one URL for the whole account, set out of band, so no
callback field is sent) and/or ``GET /v1/aiart/tasks/{taskId}``. Both operations
share the envelope, the codes and the task model, so one classifier serves both.
See providers.md section 1.

The decisions are pure functions: the options in
:mod:`orchestrator.providers.fotor_options`, the submit bodies here
(:func:`build_submit_body`, :func:`build_replace_body`), and what each answer
means in :mod:`orchestrator.providers.fotor_answers`. :class:`FotorProvider` only
does the I/O and translates ``httpx`` errors at the boundary.

Where the documentation is silent about the submit bodies:

- Inline image bytes are sent as a data URI whose type is sniffed from the magic
  bytes (PNG when unrecognised, as Fotor's own code sends).
- ``upscaling_resize`` is sent as an integer when the scale is integral (the
  documented type), as a float otherwise (Fotor's SDK sends floats).
- Replace: ``{"imageUrl", "content", "maskImageUrl"}`` as documented (SEED 001),
  the input and the mask as URLs. Assumed: when a URL is missing but the bytes
  are there, the field carries a data URI, as the upscaler's ``userImageUrl``
  takes one; the prompt is sent as given.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx

from orchestrator.common.clock import Clock, SystemClock
from orchestrator.fetch.imagecheck import MEDIA_TYPES, sniff_image
from orchestrator.providers.base import Accepted, CallbackMode, SubmitRequest
from orchestrator.providers.fotor_answers import (
    DEFAULT_S3_BASE_URL,
    NAME,
    classify_credits,
    classify_submit,
    classify_task,
    parse_callback_body,
)
from orchestrator.providers.fotor_options import (
    DEFAULT_MAX_SIDE,
    checked_side,
    validate_fotor_options,
    validate_replace_options,
)
from orchestrator.providers.http import JsonApi, http_base_url, path_segment
from schemas.errors import ProviderRejected, RejectedInput
from schemas.jobs import FailureReason, Operation, ProviderUpdate
from schemas.payloads import MAX_PAYLOAD_BYTES, json_number

if TYPE_CHECKING:
    from orchestrator.providers.base import HasBalance, Provider

DEFAULT_BASE_URL: Final = "https://api-b.fotor.com"

SUBMIT_PATH: Final = "/v1/aiart/imgupscale"
REPLACE_PATH: Final = "/v1/aiart/replacer"
TASKS_PATH: Final = "/v1/aiart/tasks/"
CREDITS_PATH: Final = "/v1/credits"

MAX_RESPONSE_BYTES = MAX_PAYLOAD_BYTES


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


def _url_or_data(url: str | None, data: bytes | None) -> str | None:
    """The URL when there is one (documented for replace), else the bytes as a data URI."""
    if url:
        return url
    if data:
        return image_data_uri(data)
    return None


def build_replace_body(request: SubmitRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1/aiart/replacer``: ``{imageUrl, content, maskImageUrl}``.

    URLs win over inline bytes (the documented form). Raises
    :class:`ProviderRejected` (``rejected_input``) when the image, the prompt or
    the mask is missing.
    """
    image = _url_or_data(request.image_url, request.image_bytes)
    if image is None:
        raise ProviderRejected("Fotor needs an image URL or image bytes", "rejected_input")
    if request.prompt is None or not request.prompt.strip():
        raise ProviderRejected("Fotor's replace needs a prompt", "rejected_input")
    mask = _url_or_data(request.mask_url, request.mask_bytes)
    if mask is None:
        raise ProviderRejected("Fotor's replace needs a mask URL or mask bytes", "rejected_input")
    return {"imageUrl": image, "content": request.prompt, "maskImageUrl": mask}


def task_path(task_id: str) -> str:
    """``/v1/aiart/tasks/{id}`` with the id quoted so it stays one path segment."""
    return TASKS_PATH + path_segment(task_id)


# --- I/O -----------------------------------------------------------------------------


class FotorProvider:
    """Fotor behind the :class:`~orchestrator.providers.base.Provider` protocol."""

    name: str = NAME
    callback_mode: CallbackMode = "account"
    needs_image_url: bool = False
    operations: frozenset[Operation] = frozenset({Operation.UPSCALE, Operation.REPLACE})

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
            self._max_width = checked_side("max_image_width", max_image_width)
            self._max_height = checked_side("max_image_height", max_image_height)
        except RejectedInput as exc:
            raise ValueError(exc.message) from None
        self._submit_timeout_s = float(submit_timeout_s)
        self._poll_timeout_s = float(poll_timeout_s)
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"FotorProvider(base_url={self._api.base_url!r}, api_key='***')"

    def validate_options(
        self,
        scale: float,
        options: dict[str, Any],
        *,
        operation: Operation = Operation.UPSCALE,
    ) -> dict[str, Any]:
        """The normalised options of an ``operation`` job; replace takes none."""
        if operation == Operation.REPLACE:
            return validate_replace_options(options)
        if operation != Operation.UPSCALE:
            raise RejectedInput(f"Fotor does not offer the operation '{operation}'")
        return validate_fotor_options(
            scale, options, default_width=self._max_width, default_height=self._max_height
        )

    def _submit_call(self, request: SubmitRequest) -> tuple[str, dict[str, Any]]:
        """The path and body for ``request``, or ``ProviderRejected`` (rejected input)."""
        try:
            options = self.validate_options(
                request.scale, request.options, operation=request.operation
            )
        except RejectedInput as exc:
            raise ProviderRejected(exc.message, FailureReason.REJECTED_INPUT) from exc
        if request.operation == Operation.REPLACE:
            return REPLACE_PATH, build_replace_body(request)
        return SUBMIT_PATH, build_submit_body(request, options)

    async def submit(self, request: SubmitRequest) -> Accepted:
        path, body = self._submit_call(request)
        answer = await self._api.submit(
            path,
            body,
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
