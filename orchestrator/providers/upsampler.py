"""The Upsampler adapter (``https://upsampler.com/api/v1``).

Asynchronous provider: ``POST /{endpoint}-upscale`` with a per-job ``webhook``,
then a terminal webhook and/or ``GET /status/{id}``. See providers.md section 2.

The decisions are pure functions: the options in
:mod:`orchestrator.providers.upsampler_options`, the submit body here
(:func:`build_submit_body`), and what each answer means in
:mod:`orchestrator.providers.upsampler_answers`. :class:`UpsamplerProvider` only
does the I/O and translates ``httpx`` errors at the boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from orchestrator.common.clock import Clock, SystemClock
from orchestrator.providers.base import (
    Accepted,
    CallbackMode,
    SubmitRequest,
    refuse_other_operations,
)
from orchestrator.providers.http import JsonApi, path_segment
from orchestrator.providers.upsampler_answers import (
    NAME,
    classify_status,
    classify_submit,
    parse_callback_body,
)
from orchestrator.providers.upsampler_options import DEFAULT_ENDPOINT, validate_upsampler_options
from schemas.errors import ProviderRejected, RejectedInput
from schemas.jobs import FailureReason, Operation, ProviderUpdate
from schemas.payloads import MAX_PAYLOAD_BYTES, json_number

if TYPE_CHECKING:
    from orchestrator.providers.base import Provider

MAX_RESPONSE_BYTES = MAX_PAYLOAD_BYTES


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


def status_path(provider_job_id: str) -> str:
    """``/status/{id}`` with the id quoted so it stays one path segment."""
    return f"/status/{path_segment(provider_job_id)}"


# --- I/O -----------------------------------------------------------------------------


class UpsamplerProvider:
    """Upsampler behind the :class:`~orchestrator.providers.base.Provider` protocol."""

    name: str = NAME
    callback_mode: CallbackMode = "job"
    needs_image_url: bool = True
    operations: frozenset[Operation] = frozenset({Operation.UPSCALE})

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

    def validate_options(
        self, scale: float, options: dict[str, Any], *, operation: Operation = Operation.UPSCALE
    ) -> dict[str, Any]:
        refuse_other_operations("Upsampler", operation)
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
