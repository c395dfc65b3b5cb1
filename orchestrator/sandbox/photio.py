"""Sandbox double of the Photio upscale API (``POST /v1/inference/upscale``).

Wire contract (providers.md section 3; mounted at ``/photio``):

- ``X-Photio-Key: <key>`` (any non-empty key, or exactly the sandbox's key when
  it has one); a missing or wrong key answers HTTP 401
  ``{"status_code": 401, "body": "<message>"}``;
- body ``{"image": <base64 | data URI | http(s) URL>, "upscale_by": 2|4,
  "prompt", "negative_prompt", "quality": LOW|MIDDLE|HIGH, "denoising_strength": 0..1}``;
- success is HTTP 200 ``{"status_code": 200, "body": "<base64 PNG>"}``, the image
  upscaled for real (Pillow LANCZOS), its long side capped at 4096 px ("4K");
- errors (undocumented, our choice) mirror the code in both places:
  ``{"status_code": N, "body": "<message>"}`` with HTTP N (400, 401, 413, 429, 500).

Faults: ``submit_429`` (429 + ``Retry-After: retry_after_s``), ``submit_500``,
``status_in_body`` (HTTP 200 ``{"status_code": 500, "body": ""}``),
``processing_s`` (wait before answering), ``corrupt_result`` (base64 of bytes
that are not an image), ``data_uri_body`` (``data:image/png;base64,`` prefix) and
``submit_timeout`` (do the work, then hang ``submit_timeout_s`` or until the
client leaves).

Stats are kept under ``"photio"``, registered on the first request to this
provider (so a sandbox without Photio traffic does not list it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import math
from dataclasses import dataclass, field

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.sandbox.context import DownloadFailed, SandboxContext, retry_after_value
from orchestrator.sandbox.imaging import (
    UNREADABLE_IMAGE_ERRORS,
    unreadable_message,
    upscale_image,
)
from orchestrator.sandbox.wire import is_http_url, sleep_unless_disconnected

logger = logging.getLogger(__name__)

PROVIDER = "photio"
API_PREFIX = "/photio"
SUBMIT_PATH = "/v1/inference/upscale"
AUTH_HEADER = "x-photio-key"

MAX_OUTPUT_SIDE = 4096
DATA_URI_PREFIX = "data:image/png;base64,"
SCALES = (2, 4)
QUALITIES = ("LOW", "MIDDLE", "HIGH")
DEFAULT_NEGATIVE_PROMPT = (
    "worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch"
)

EXTRA_COUNTERS = (
    "submits_rejected",
    "submits_throttled",
    "submits_errored",
    "submits_timed_out",
    "status_in_body",
    "unauthorized",
    "inputs_fetched",
    "jobs_succeeded",
    "jobs_failed",
    "results_corrupt",
    "data_uri_bodies",
)

_CORRUPT_PREFIX = b"CORRUPT!"


@dataclass(frozen=True, slots=True)
class PhotioSubmit:
    image: str = field(repr=False)
    upscale_by: int
    prompt: str
    negative_prompt: str
    quality: str
    denoising_strength: float


class InvalidSubmit(ValueError):
    """The submit body is malformed or out of range (400)."""


class InputError(ValueError):
    """The input image cannot be had: unreachable, too large or unreadable."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def photio_answer(
    status_code: int,
    body: str,
    *,
    http_status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """``{"status_code", "body"}`` with HTTP ``http_status`` (default: ``status_code``)."""
    return JSONResponse(
        {"status_code": status_code, "body": body},
        status_code=http_status if http_status is not None else status_code,
        headers=headers,
    )


def parse_submit(raw: bytes) -> PhotioSubmit:
    """Read and check a submit body; raise :class:`InvalidSubmit` with the reason."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidSubmit("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidSubmit("request body must be a JSON object")
    image = body.get("image")
    if not isinstance(image, str) or not image.strip():
        raise InvalidSubmit("image is required: a base64 image or an image URL")
    upscale_by = body.get("upscale_by", 2)
    if isinstance(upscale_by, bool) or upscale_by not in SCALES:
        raise InvalidSubmit("upscale_by must be 2 or 4")
    texts: dict[str, str] = {}
    for key, default in (("prompt", ""), ("negative_prompt", DEFAULT_NEGATIVE_PROMPT)):
        value = body.get(key, default)
        if not isinstance(value, str):
            raise InvalidSubmit(f"{key} must be a string")
        texts[key] = value
    quality = body.get("quality", "LOW")
    if quality not in QUALITIES:
        raise InvalidSubmit(f"quality must be one of: {', '.join(QUALITIES)}")
    strength = body.get("denoising_strength", 0.2)
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float)
        or not math.isfinite(strength)
        or not 0 <= strength <= 1
    ):
        raise InvalidSubmit("denoising_strength must be a number from 0.0 to 1.0")
    return PhotioSubmit(
        image=image.strip(),
        upscale_by=int(upscale_by),
        prompt=texts["prompt"],
        negative_prompt=texts["negative_prompt"],
        quality=quality,
        denoising_strength=float(strength),
    )


def decode_base64_image(text: str, limit: int) -> bytes:
    """Decode a base64 image (optional data-URI prefix); raise :class:`InputError`."""
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InputError("image data URI must be base64-encoded")
    if len(text) > (limit * 4) // 3 + 4:
        raise InputError(f"image is larger than {limit} bytes", too_large=True)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("image is neither an http(s) URL nor valid base64") from None
    if not data:
        raise InputError("image is empty")
    return data


async def fetch_image(ctx: SandboxContext, url: str, limit: int) -> bytes:
    """Download an input image with the sandbox's client; raise :class:`InputError`."""
    try:
        return await ctx.download(url, limit)
    except DownloadFailed as exc:
        if exc.too_large:
            raise InputError(f"image is larger than {limit} bytes", too_large=True) from None
        logger.info("sandbox input download failed: %s", exc.reason)
        raise InputError("the image URL could not be fetched") from None


def upscale_capped(data: bytes, factor: float, max_side: int, max_pixels: int) -> bytes:
    """Upscale by ``factor`` but keep the long side at most ``max_side``; PNG bytes.

    Blocking (run it in a thread). Raises ``ValueError`` for non-images, inputs
    already over ``max_side`` and outputs over ``max_pixels``.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
    except UNREADABLE_IMAGE_ERRORS as exc:
        raise ValueError(unreadable_message(exc)) from None
    long_side = max(width, height)
    if long_side > max_side:
        raise ValueError(f"input is already larger than the {max_side} px output limit")
    return upscale_image(data, min(factor, max_side / long_side), max_pixels)


class PhotioSandbox:
    """The Photio route, on top of a shared :class:`SandboxContext`."""

    def __init__(self, ctx: SandboxContext, *, max_output_side: int = MAX_OUTPUT_SIDE) -> None:
        self.ctx = ctx
        self.max_output_side = max_output_side

    def _bump(self, counter: str) -> None:
        # Registered on first use, so a sandbox nobody sent Photio traffic to
        # reports no "photio" stats at all (as for Fotor).
        self.ctx.stats.register(PROVIDER, EXTRA_COUNTERS)
        self.ctx.stats.bump(PROVIDER, counter)

    def routes(self) -> list[BaseRoute]:
        """Routes to mount at :data:`API_PREFIX`."""
        return [Route(SUBMIT_PATH, self.submit, methods=["POST"])]

    async def submit(self, request: Request) -> Response:
        ctx, faults = self.ctx, self.ctx.faults
        self._bump("submits")
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        raw = await request.body()
        if len(raw) > 2 * ctx.max_input_bytes:
            self._bump("submits_rejected")
            return photio_answer(413, "request body is too large")
        try:
            submit = parse_submit(raw)
        except InvalidSubmit as exc:
            self._bump("submits_rejected")
            return photio_answer(400, str(exc))
        if faults.roll("submit_429", ctx.rng):
            self._bump("submits_throttled")
            retry_after = retry_after_value(faults.retry_after_s)
            return photio_answer(429, "too many requests", headers={"Retry-After": retry_after})
        if faults.roll("submit_500", ctx.rng):
            self._bump("submits_errored")
            return photio_answer(500, "internal server error")
        if faults.roll("status_in_body", ctx.rng):
            self._bump("status_in_body")
            return photio_answer(500, "", http_status=200)

        try:
            data = await self._input(submit.image)
            if faults.processing_s > 0:
                await sleep_unless_disconnected(request, faults.processing_s)
            png = await asyncio.to_thread(
                upscale_capped,
                data,
                float(submit.upscale_by),
                self.max_output_side,
                ctx.max_output_pixels,
            )
        except (InputError, ValueError) as exc:
            self._bump("jobs_failed")
            too_large = isinstance(exc, InputError) and exc.too_large
            return photio_answer(413 if too_large else 400, str(exc))
        self._bump("jobs_created")
        self._bump("jobs_succeeded")
        logger.info("photio upscale x%d done (%d bytes)", submit.upscale_by, len(png))

        if faults.roll("corrupt_result", ctx.rng):
            self._bump("results_corrupt")
            png = _CORRUPT_PREFIX + ctx.rng.randbytes(max(64, min(len(png), 4096)))
        text = base64.b64encode(png).decode("ascii")
        if faults.roll("data_uri_body", ctx.rng):
            self._bump("data_uri_bodies")
            text = DATA_URI_PREFIX + text
        if faults.roll("submit_timeout", ctx.rng):
            self._bump("submits_timed_out")
            await sleep_unless_disconnected(request, faults.submit_timeout_s)
        return photio_answer(200, text)

    async def _input(self, image: str) -> bytes:
        limit = self.ctx.max_input_bytes
        if is_http_url(image):
            data = await fetch_image(self.ctx, image, limit)
            self._bump("inputs_fetched")
            return data
        return decode_base64_image(image, limit)

    def _check_auth(self, request: Request) -> Response | None:
        if not self.ctx.accepts_key(request.headers.get(AUTH_HEADER, "").strip()):
            self._bump("unauthorized")
            return photio_answer(401, "invalid or missing X-Photio-Key")
        return None
