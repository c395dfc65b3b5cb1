"""Sandbox double of the Upsampler API (https://upsampler.com/api/v1).

Wire contract (see /work/shared/providers.md section 2):

- ``POST /smart-upscale``, ``/dynamic-upscale``, ``/precise-upscale`` with
  ``Authorization: Bearer <key>`` and ``{"webhook"?, "input": {"imageUrl", "upscaleFactor", ...}}``
  answer ``{"id", "status": "IN_QUEUE", "creditCost"}``;
- ``GET /status/{id}`` answers the same body as the webhook:
  ``{"id", "status"}`` plus ``imageUrl``/``compressedImageUrl``/``creditCost``
  on ``SUCCESS`` or ``error`` on ``FAILED``;
- errors answer ``{"status": "FAILED", "error": "..."}`` with 400/401/404/429/500.

Jobs are processed for real (download, Pillow LANCZOS resize) in background
tasks; results are hosted by the sandbox under ``/upsampler/results``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.sandbox.context import (
    DownloadFailed,
    SandboxContext,
    retry_after_value,
    sandbox_root_url,
)
from orchestrator.sandbox.imaging import upscale_image_variants
from orchestrator.sandbox.wire import bearer_key, is_http_url, sleep_unless_disconnected

logger = logging.getLogger(__name__)

PROVIDER = "upsampler"
API_PREFIX = "/upsampler/api/v1"
RESULTS_PREFIX = "/upsampler/results"

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILED = "FAILED"

EXTRA_COUNTERS = (
    "submits_rejected",
    "submits_throttled",
    "submits_errored",
    "submits_no_credit",
    "submits_timed_out",
    "status_throttled",
    "status_errored",
    "unauthorized",
    "jobs_succeeded",
    "jobs_failed",
    "early_callbacks",
    "callback_attempts",
    "callbacks_dropped",
    "results_expired",
    "results_corrupt",
)

# Credits are estimated on submit as if the input were this many pixels; the
# final payload carries the cost computed from the real output size.
ASSUMED_INPUT_PIXELS = 1024 * 1024
MEGAPIXEL = 1_000_000


@dataclass(frozen=True, slots=True)
class Mode:
    endpoint: str
    min_factor: float
    max_factor: float
    default_factor: float
    megapixels_per_credit: float

    def credit_cost(self, output_pixels: float) -> int:
        """1 credit per ``megapixels_per_credit`` output megapixels, minimum 1."""
        return max(1, round(output_pixels / (MEGAPIXEL * self.megapixels_per_credit)))


MODES: dict[str, Mode] = {
    m.endpoint: m
    for m in (
        Mode("smart-upscale", 1.0, 4.0, 2.0, 1.0),
        Mode("dynamic-upscale", 1.0, 4.0, 2.0, 1.0),
        Mode("precise-upscale", 1.0, 16.0, 4.0, 4.0),
    )
}


@dataclass(slots=True)
class UpsamplerJob:
    id: str
    mode: Mode
    image_url: str
    factor: float
    webhook: str | None
    base_url: str
    credit_cost: int
    status: str = IN_QUEUE
    error: str | None = None
    png: bytes | None = field(default=None, repr=False)
    jpeg: bytes | None = field(default=None, repr=False)


class InvalidSubmit(ValueError):
    """The submit body is malformed or semantically wrong (400)."""


class JobFailed(Exception):
    """Processing failed; the message goes to the job's ``error``."""


def failure(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"status": FAILED, "error": message}, status_code=status_code, headers=headers
    )


def parse_submit(raw: bytes, mode: Mode) -> tuple[str, float, str | None]:
    """Return ``(image_url, factor, webhook)`` or raise ``InvalidSubmit``."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidSubmit("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidSubmit("request body must be a JSON object")
    webhook = body.get("webhook")
    if webhook is not None and not is_http_url(webhook):
        raise InvalidSubmit("webhook must be an http(s) URL")
    data = body.get("input")
    if not isinstance(data, dict):
        raise InvalidSubmit("input must be an object")
    image_url = data.get("imageUrl")
    if not is_http_url(image_url):
        raise InvalidSubmit("input.imageUrl is required and must be an http(s) URL")
    factor = data.get("upscaleFactor", mode.default_factor)
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        raise InvalidSubmit("input.upscaleFactor must be a number")
    if not (math.isfinite(factor) and mode.min_factor <= factor <= mode.max_factor):
        raise InvalidSubmit(
            f"input.upscaleFactor must be between {mode.min_factor:g} and {mode.max_factor:g}"
        )
    return image_url, float(factor), webhook


class UpsamplerSandbox:
    """The Upsampler routes and job table, on top of a shared ``SandboxContext``."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.jobs: dict[str, UpsamplerJob] = {}
        ctx.stats.register(PROVIDER, EXTRA_COUNTERS)

    # -- routes -----------------------------------------------------------

    def api_routes(self) -> list[BaseRoute]:
        """Routes to mount at ``API_PREFIX``."""
        routes: list[BaseRoute] = [
            Route(f"/{endpoint}", self._submit_endpoint(mode), methods=["POST"])
            for endpoint, mode in MODES.items()
        ]
        routes.append(Route("/status/{job_id}", self.status, methods=["GET"]))
        return routes

    def result_routes(self) -> list[BaseRoute]:
        """Routes to mount at ``RESULTS_PREFIX``."""
        return self.ctx.results.routes(PROVIDER)

    def _submit_endpoint(self, mode: Mode) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.submit(request, mode)

        return endpoint

    # -- handlers ---------------------------------------------------------

    async def submit(self, request: Request, mode: Mode) -> Response:
        ctx, faults = self.ctx, self.ctx.faults_for(PROVIDER)
        ctx.stats.bump(PROVIDER, "submits")
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        try:
            image_url, factor, webhook = parse_submit(await request.body(), mode)
        except InvalidSubmit as exc:
            ctx.stats.bump(PROVIDER, "submits_rejected")
            return failure(400, str(exc))
        if faults.roll("submit_429", ctx.rng):
            ctx.stats.bump(PROVIDER, "submits_throttled")
            return self._throttled()
        if faults.roll("submit_500", ctx.rng):
            ctx.stats.bump(PROVIDER, "submits_errored")
            return failure(500, "internal error, the job was not queued")
        if faults.roll("no_credit", ctx.rng):
            ctx.stats.bump(PROVIDER, "submits_no_credit")
            return failure(403, "API key inactive or insufficient credits")

        job = UpsamplerJob(
            id=ctx.new_id(8),
            mode=mode,
            image_url=image_url,
            factor=factor,
            webhook=webhook,
            base_url=sandbox_root_url(request),
            credit_cost=mode.credit_cost(ASSUMED_INPUT_PIXELS * factor * factor),
        )
        self.jobs[job.id] = job
        ctx.stats.bump(PROVIDER, "jobs_created")
        logger.info("upsampler job %s created (%s x%g)", job.id, mode.endpoint, factor)

        answer = {"id": job.id, "status": IN_QUEUE, "creditCost": job.credit_cost}
        if faults.roll("early_callback", ctx.rng):
            ctx.stats.bump(PROVIDER, "early_callbacks")
            await ctx.run_before_answer(self._run(job, wait=False), name=f"upsampler-{job.id}")
        else:
            ctx.spawn(self._run(job, wait=True), name=f"upsampler-{job.id}")
        if faults.roll("submit_timeout", ctx.rng):
            ctx.stats.bump(PROVIDER, "submits_timed_out")
            await sleep_unless_disconnected(request, faults.submit_timeout_s)
        return JSONResponse(answer)

    async def status(self, request: Request) -> Response:
        ctx, faults = self.ctx, self.ctx.faults_for(PROVIDER)
        ctx.stats.bump(PROVIDER, "status_calls")
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        if faults.roll("status_429", ctx.rng):
            ctx.stats.bump(PROVIDER, "status_throttled")
            return self._throttled()
        if faults.roll("status_500", ctx.rng):
            ctx.stats.bump(PROVIDER, "status_errored")
            return failure(500, "internal error")
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return failure(404, "job not found")
        return JSONResponse(self.payload(job, sandbox_root_url(request)))

    def payload(self, job: UpsamplerJob, base_url: str) -> dict[str, Any]:
        """The webhook / status body; mints fresh result URLs on SUCCESS."""
        body: dict[str, Any] = {"id": job.id, "status": job.status}
        if job.status == SUCCESS and job.png is not None and job.jpeg is not None:
            body["imageUrl"] = self._mint(job.png, "image/png", "png", base_url)
            body["compressedImageUrl"] = self._mint(job.jpeg, "image/jpeg", "jpg", base_url)
            body["creditCost"] = job.credit_cost
        elif job.status == FAILED:
            body["error"] = job.error or "Failed to process image."
        return body

    # -- internals --------------------------------------------------------

    def _check_auth(self, request: Request) -> Response | None:
        key = bearer_key(request)
        if key is not None and self.ctx.accepts_key(key):
            return None
        self.ctx.stats.bump(PROVIDER, "unauthorized")
        if key is None:
            return failure(401, "missing API key: send Authorization: Bearer <key>")
        return failure(401, "invalid API key")

    def _throttled(self) -> Response:
        retry_after = retry_after_value(self.ctx.faults.retry_after_s)
        return failure(429, "rate limit exceeded", headers={"Retry-After": retry_after})

    def _mint(self, data: bytes, media_type: str, extension: str, base_url: str) -> str:
        faults, rng = self.ctx.faults, self.ctx.rng
        token = self.ctx.results.mint(
            PROVIDER,
            data,
            media_type=media_type,
            extension=extension,
            expired=faults.roll("expire_result", rng),
            corrupt=faults.roll("corrupt_result", rng),
        )
        base = faults.result_base_url or base_url
        return f"{base}{RESULTS_PREFIX}/{token}.{extension}"

    async def _run(self, job: UpsamplerJob, *, wait: bool) -> None:
        """Process ``job`` to a final status, then deliver its webhook if any."""
        try:
            await self._process(job, wait=wait)
        except JobFailed as exc:
            self._fail(job, str(exc))
        except Exception:
            logger.exception("upsampler job %s crashed", job.id)
            self._fail(job, "Failed to process image due to an internal error.")
        if job.webhook is not None:
            await self.ctx.callbacks.deliver(PROVIDER, job.webhook, self.payload(job, job.base_url))

    async def _process(self, job: UpsamplerJob, *, wait: bool) -> None:
        job.status = IN_PROGRESS
        data = await self._download(job.image_url)
        delay = self.ctx.faults.processing_s
        if wait and delay > 0:
            await asyncio.sleep(delay)
        try:
            result = await asyncio.to_thread(
                upscale_image_variants, data, job.factor, self.ctx.max_output_pixels
            )
        except ValueError as exc:
            raise JobFailed(f"Failed to process image: {exc}") from None
        job.png, job.jpeg = result.png, result.jpeg
        job.credit_cost = job.mode.credit_cost(result.width * result.height)
        job.status = SUCCESS
        self.ctx.stats.bump(PROVIDER, "jobs_succeeded")
        logger.info("upsampler job %s succeeded (%dx%d)", job.id, result.width, result.height)

    def _fail(self, job: UpsamplerJob, message: str) -> None:
        job.status, job.error = FAILED, f"{message} Your credits have been refunded."
        self.ctx.stats.bump(PROVIDER, "jobs_failed")
        logger.info("upsampler job %s failed: %s", job.id, message)

    async def _download(self, url: str) -> bytes:
        limit = self.ctx.max_input_bytes
        try:
            return await self.ctx.download(url, limit)
        except DownloadFailed as exc:
            if exc.too_large:
                raise JobFailed(f"Input image is larger than {limit} bytes.") from None
            logger.info("upsampler input download failed: %s", exc.reason)
            raise JobFailed("Failed to download input image.") from None
