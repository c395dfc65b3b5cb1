"""Sandbox double of the Artnex upscale API (``POST /v1/upscale``).

Wire contract (providers.md section 4; mounted at ``/artnex``):

- ``Authorization: Bearer <key>`` (any non-empty key, or exactly the sandbox's key
  when it has one), else 401 ``invalid_api_key``;
- body ``{"image": <http(s) URL | data:image/(jpeg|png|webp);base64,...>, "scale": n}``,
  ``scale`` a number from 1 to 4 (default 2);
- success: 200 ``{"success": true, "image_url", "request_id", "credits_used": 100}``,
  the image upscaled for real (Pillow LANCZOS) and hosted under
  ``/artnex/results/{token}.png`` for 24 hours (by the injectable clock);
- errors: ``{"success": false, "error": "<code>", "message"}`` with 400
  ``missing_image`` / ``invalid_image_format`` / ``image_too_large`` (over
  10,000,000 bytes) / ``invalid_scale`` (and ``invalid_request`` for a body that
  is not a JSON object: undocumented), 401 ``invalid_api_key``, 402
  ``insufficient_credits``, 429 ``rate_limit_exceeded``, 500 ``internal_error``.

Faults: ``submit_429`` (429 + ``Retry-After: retry_after_s``), ``quota_per_day``
(after that many successful upscales per API key within a rolling 24 h window,
429 with ``Retry-After`` = seconds until a slot frees in the window; 0 =
unlimited), ``no_credit`` (402), ``submit_500``, ``processing_s``,
``expire_result`` (the URL answers 410), ``corrupt_result`` (the URL serves
non-image bytes) and ``submit_timeout`` (do the work, then hang).

Stats are kept under ``"artnex"``, registered on the first request to this
provider (so a sandbox without Artnex traffic does not list it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from orchestrator.fetch.imagecheck import SNIFF_BYTES, sniff_format
from orchestrator.sandbox.context import SandboxContext, retry_after_value, sandbox_root_url
from orchestrator.sandbox.imaging import upscale_image
from orchestrator.sandbox.photio import InputError, fetch_image
from orchestrator.sandbox.results import ResultStore
from orchestrator.sandbox.wire import bearer_key, is_http_url, sleep_unless_disconnected

logger = logging.getLogger(__name__)

PROVIDER = "artnex"
API_PREFIX = "/artnex"
SUBMIT_PATH = "/v1/upscale"
RESULTS_PATH = "/results"

RESULT_TTL_S = 24 * 3600.0
QUOTA_WINDOW_S = 24 * 3600.0
MAX_IMAGE_BYTES = 10_000_000
CREDITS_PER_UPSCALE = 100
MIN_SCALE = 1.0
MAX_SCALE = 4.0
DEFAULT_SCALE = 2.0
IMAGE_FORMATS = ("jpeg", "png", "webp")

EXTRA_COUNTERS = (
    "submits_rejected",
    "submits_throttled",
    "submits_errored",
    "submits_timed_out",
    "quota_exceeded",
    "no_credit",
    "unauthorized",
    "inputs_fetched",
    "jobs_succeeded",
    "jobs_failed",
    "results_expired",
    "results_corrupt",
)

_DATA_URI = re.compile(r"\Adata:image/(jpeg|jpg|png|webp);base64,", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ArtnexSubmit:
    image: str = field(repr=False)
    scale: float


class ArtnexError(Exception):
    """An error answer: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def artnex_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        {"success": False, "error": code, "message": message}, status_code=status, headers=headers
    )


def parse_submit(raw: bytes) -> ArtnexSubmit:
    """Read and check a submit body; raise :class:`ArtnexError` (400) with the code."""
    try:
        body: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtnexError(400, "invalid_request", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ArtnexError(400, "invalid_request", "request body must be a JSON object")
    image = body.get("image")
    if image is None or image == "":
        raise ArtnexError(400, "missing_image", "The image field is required")
    if not isinstance(image, str) or not (is_http_url(image) or _DATA_URI.match(image)):
        raise ArtnexError(
            400,
            "invalid_image_format",
            "image must be an HTTPS URL or a base64 string with a data URI prefix "
            "(data:image/jpeg|png|webp;base64,...)",
        )
    scale = body.get("scale", DEFAULT_SCALE)
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or not MIN_SCALE <= scale <= MAX_SCALE
    ):
        raise ArtnexError(
            400,
            "invalid_scale",
            f"scale must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}",
        )
    return ArtnexSubmit(image=image, scale=float(scale))


def decode_data_uri(image: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URI; raise :class:`ArtnexError`."""
    payload = image.partition(",")[2]
    if len(payload) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise ArtnexError(400, "image_too_large", f"image exceeds {MAX_IMAGE_BYTES} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ArtnexError(400, "invalid_image_format", "image is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ArtnexError(400, "image_too_large", f"image exceeds {MAX_IMAGE_BYTES} bytes")
    return data


class ArtnexSandbox:
    """The Artnex routes, quota and hosted results, on a shared :class:`SandboxContext`."""

    def __init__(self, ctx: SandboxContext, *, result_ttl_s: float = RESULT_TTL_S) -> None:
        self.ctx = ctx
        self.results = ResultStore(
            clock=ctx.clock, rng=ctx.rng, stats=ctx.stats, ttl_s=result_ttl_s
        )
        self._usage: dict[str, collections.deque[float]] = {}

    def _bump(self, counter: str) -> None:
        # Registered on first use, so a sandbox nobody sent Artnex traffic to
        # reports no "artnex" stats at all (as for Fotor).
        self.ctx.stats.register(PROVIDER, EXTRA_COUNTERS)
        self.ctx.stats.bump(PROVIDER, counter)

    def routes(self) -> list[BaseRoute]:
        """Routes to mount at :data:`API_PREFIX`: the API and the hosted results."""
        return [
            Route(SUBMIT_PATH, self.submit, methods=["POST"]),
            Mount(RESULTS_PATH, routes=self.results.routes(PROVIDER)),
        ]

    async def submit(self, request: Request) -> Response:
        ctx, faults = self.ctx, self.ctx.faults
        self._bump("submits")
        key = self._api_key(request)
        if key is None:
            self._bump("unauthorized")
            return artnex_error(
                401, "invalid_api_key", "The API key is missing, malformed, or revoked"
            )
        try:
            submit = parse_submit(await request.body())
        except ArtnexError as exc:
            self._bump("submits_rejected")
            return artnex_error(exc.status, exc.code, exc.message)
        if faults.roll("submit_429", ctx.rng):
            self._bump("submits_throttled")
            return self._rate_limited(faults.retry_after_s)
        wait = self.quota_wait(key)
        if wait is not None:
            self._bump("quota_exceeded")
            return self._rate_limited(math.ceil(wait))
        if faults.roll("no_credit", ctx.rng):
            self._bump("no_credit")
            return artnex_error(
                402, "insufficient_credits", "Your account does not have enough credits"
            )
        if faults.roll("submit_500", ctx.rng):
            self._bump("submits_errored")
            return artnex_error(500, "internal_error", "An unexpected error occurred")

        try:
            data = await self._input(submit.image)
            if faults.processing_s > 0:
                await sleep_unless_disconnected(request, faults.processing_s)
            png = await asyncio.to_thread(upscale_image, data, submit.scale, ctx.max_output_pixels)
        except ArtnexError as exc:
            self._bump("jobs_failed")
            return artnex_error(exc.status, exc.code, exc.message)
        except ValueError as exc:
            self._bump("jobs_failed")
            return artnex_error(400, "invalid_image_format", str(exc))
        self._usage.setdefault(key, collections.deque()).append(ctx.clock())
        self._bump("jobs_created")
        self._bump("jobs_succeeded")
        request_id = f"req_ups_{ctx.new_id(8)}"
        token = self.results.mint(
            PROVIDER,
            png,
            media_type="image/png",
            extension="png",
            expired=faults.roll("expire_result", ctx.rng),
            corrupt=faults.roll("corrupt_result", ctx.rng),
        )
        base = faults.result_base_url or sandbox_root_url(request)
        answer = {
            "success": True,
            "image_url": f"{base}{API_PREFIX}{RESULTS_PATH}/{token}.png",
            "request_id": request_id,
            "credits_used": CREDITS_PER_UPSCALE,
        }
        logger.info("artnex upscale %s x%g done", request_id, submit.scale)
        if faults.roll("submit_timeout", ctx.rng):
            self._bump("submits_timed_out")
            await sleep_unless_disconnected(request, faults.submit_timeout_s)
        return JSONResponse(answer)

    def quota_wait(self, key: str) -> float | None:
        """Seconds until ``key`` may upscale again, or None when under its daily quota."""
        quota = int(self.ctx.faults.quota_per_day)
        usage = self._usage.get(key)
        now = self.ctx.clock()
        while usage and usage[0] <= now - QUOTA_WINDOW_S:
            usage.popleft()
        if quota <= 0 or usage is None or len(usage) < quota:
            return None
        oldest = usage[len(usage) - quota]
        return max(1.0, oldest + QUOTA_WINDOW_S - now)

    def _rate_limited(self, retry_after_s: float) -> Response:
        return artnex_error(
            429,
            "rate_limit_exceeded",
            "You have exceeded your plan's daily request quota",
            headers={"Retry-After": retry_after_value(retry_after_s)},
        )

    async def _input(self, image: str) -> bytes:
        if is_http_url(image):
            try:
                data = await fetch_image(self.ctx, image, MAX_IMAGE_BYTES)
            except InputError as exc:
                code = "image_too_large" if exc.too_large else "invalid_image_format"
                raise ArtnexError(400, code, str(exc)) from None
            self._bump("inputs_fetched")
        else:
            data = decode_data_uri(image)
        if sniff_format(data[:SNIFF_BYTES]) not in IMAGE_FORMATS:
            raise ArtnexError(
                400, "invalid_image_format", "Supported formats are JPEG, PNG and WebP"
            )
        return data

    def _api_key(self, request: Request) -> str | None:
        key = bearer_key(request)
        return key if key is not None and self.ctx.accepts_key(key) else None
