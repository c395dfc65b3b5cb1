"""The local provider's app: a small in-process upscaling (and inpainting) API, and its
wire contract.

The service mounts this app at ``/local`` (:data:`LOCAL_MOUNT`) and reaches it
over HTTP through :class:`~orchestrator.providers.local.LocalProvider`, like any
cloud provider: local jobs take the same submit / callback / poll / fetch path.
Upscaling and inpainting run in a ``ProcessPoolExecutor`` (``workers`` processes, started with
``spawn``), never on the event loop.

Wire contract (paths relative to the mount point)::

    POST /api/v1/upscale        Authorization: Bearer <api_key>
        {"image_url": str | null, "image_base64": str | null,   exactly one of the two
         "scale": number (1..8), "engine": str | null, "webhook": str | null}
      or, to repaint a masked area (``"operation"`` absent or null means upscale):
        {"operation": "replace", "image_url" | "image_base64" as above,
         "mask_url": str | null, "mask_base64": str | null,     exactly one of the two
         "prompt": str (1..1000 chars once trimmed), "webhook": str | null}
        200 {"id": str, "status": "QUEUED"}
        400 invalid_request | invalid_image | input_too_large | unknown_engine
            | input_unreachable | invalid_mask
        401 unauthorized   413 payload_too_large   503 not_ready
        429 busy, with Retry-After: ``max_concurrent_jobs`` jobs are queued or running
    GET /api/v1/jobs/{id}       Authorization: Bearer <api_key>
        200 job payload        404 not_found (unknown, expired, or the server restarted)
    GET /results/{token}.png    the result (no auth: the token is 128 random bits)
        404 unknown or expired (``result_ttl_s`` after the job ended)
    GET /healthz                {"status": "ok", "engines": [...], "workers": n, "active": n}

Every error answer is ``{"error": {"code": str, "message": str}}``. A job payload
(the ``GET`` answer and the webhook body) is::

    {"id": str, "status": "QUEUED" | "RUNNING" | "SUCCEEDED" | "FAILED",
     "operation": "upscale" | "replace",
     "engine": str, "scale": number, "result_url": str | null,
     "width": int | null, "height": int | null,
     "error": {"code": str, "message": str} | null}

A replace is classic inpainting (:mod:`orchestrator.local.inpainting`): its
``engine`` is the method (``telea`` with OpenCV, ``diffusion`` with Pillow
alone), its ``scale`` 1, and its result a PNG of the image's size whose unmasked
pixels are the input's. The mask (same size as the image) marks the area with
luminance >= 128, alpha 0 keeping; the prompt is accepted and ignored. A replace
body may hold two inputs, so its cap is twice an upscale's.

A FAILED job's ``error.code`` is one of ``invalid_image``, ``input_too_large``,
``invalid_mask`` (input errors), ``engine_unavailable``, ``engine_failed``, ``worker_crashed``,
``internal_error``. When a job ends, its payload is POSTed as JSON to ``webhook``,
up to ``callback_attempts`` times with exponential backoff, until a 2xx (a 4xx
other than 408/429 stops the retries). Webhook URLs are never logged: they
carry signed tokens.

The input is checked before the job is accepted: fetched by URL (http(s) only,
at most ``max_input_bytes``) or decoded from base64, then its header is read for
the size (``max_input_pixels``, and the output against ``max_output_pixels``);
a replace's mask likewise, and its size must be the image's (``invalid_mask``).
The image URL is fetched, and webhooks are sent, through the outbound address
guard: public addresses and what ``allow`` lists, nothing else.

Starlette does not run the lifespan of a mounted app: a host app must enter
``local.router.lifespan_context(local)`` in its own lifespan.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from orchestrator.fetch.allowlist import AllowList
from orchestrator.local import engines
from orchestrator.local.images import DEFAULT_MAX_OUTPUT_PIXELS
from orchestrator.local.jobs import RESULT_PREFIX
from orchestrator.local.limits import Limits
from orchestrator.local.server import LocalServer

LOCAL_MOUNT: Final = "/local"

DEFAULT_MAX_INPUT_BYTES: Final = 50 * 1024 * 1024


def create_local_app(
    *,
    api_key: str,
    work_dir: Path,
    workers: int = 2,
    max_input_pixels: int = 16_000_000,
    max_concurrent_jobs: int = 4,
    default_engine: str | None = None,
    callback_client: httpx.AsyncClient | None = None,
    allow: AllowList | None = None,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    download_timeout_s: float = 30.0,
    result_ttl_s: float = 3 * 3600.0,
    callback_attempts: int = 3,
    callback_backoff_s: float = 0.5,
    callback_timeout_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """Build the local provider's app; its state is ``app.state.local`` (:class:`LocalServer`).

    ``default_engine`` defaults to :func:`~orchestrator.local.engines.default_engine`;
    an engine that does not run here raises ``ValueError``. ``callback_client``, when
    given, is used for input downloads and webhooks and is not closed by the app;
    otherwise the app uses the guarded client, which reaches public addresses and what
    ``allow`` lists (the service's own origins), nothing else.
    """
    if not api_key:
        raise ValueError("api_key must not be empty")
    if workers < 1 or max_concurrent_jobs < 1 or callback_attempts < 1:
        raise ValueError("workers, max_concurrent_jobs and callback_attempts must be >= 1")
    if min(max_input_pixels, max_output_pixels, max_input_bytes) < 1:
        raise ValueError("pixel and byte limits must be positive")
    for name, value in (
        ("download_timeout_s", download_timeout_s),
        ("result_ttl_s", result_ttl_s),
        ("callback_timeout_s", callback_timeout_s),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive")
    if not (math.isfinite(callback_backoff_s) and callback_backoff_s >= 0):
        raise ValueError("callback_backoff_s must be >= 0")
    available = engines.available_engines()
    engine = default_engine or available[0]
    if engine not in available:
        raise ValueError(f"engine {engine!r} does not run here (available: {', '.join(available)})")
    server = LocalServer(
        api_key=api_key,
        work_dir=Path(work_dir),
        workers=workers,
        default_engine=engine,
        engines=available,
        limits=Limits(
            max_input_pixels=max_input_pixels,
            max_output_pixels=max_output_pixels,
            max_input_bytes=max_input_bytes,
            max_concurrent_jobs=max_concurrent_jobs,
            download_timeout_s=download_timeout_s,
            result_ttl_s=result_ttl_s,
            callback_attempts=callback_attempts,
            callback_backoff_s=callback_backoff_s,
            callback_timeout_s=callback_timeout_s,
        ),
        callback_client=callback_client,
        clock=clock,
        allow=allow,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.aclose()

    app = Starlette(
        routes=[
            Route("/api/v1/upscale", server.submit, methods=["POST"]),
            Route("/api/v1/jobs/{job_id}", server.job_status, methods=["GET"]),
            Route(RESULT_PREFIX + "{token}.png", server.result, methods=["GET"]),
            Route("/healthz", server.health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.local = server
    return app
