"""The sandbox app: provider doubles plus fault and stats control endpoints.

Routes (relative to where the app is mounted, ``/sandbox`` in the service and
standalone):

- ``/upsampler/api/v1/...``     the Upsampler API (see ``upsampler.py``)
- ``/upsampler/results/{token}.png|.jpg``  hosted results
- ``/fotor/...``                 the Fotor API, account webhook and results (see ``fotor.py``)
- ``/photio/v1/inference/upscale``  the Photio API, base64 answer (see ``photio.py``)
- ``/artnex/v1/upscale``, ``/artnex/results/{token}.png``  the Artnex API (see ``artnex.py``)
- ``GET /faults``, ``PUT /faults`` (JSON object merged in), ``DELETE /faults`` (defaults,
  for every provider); ``PUT /faults/{provider}``: faults of one provider's submit and
  status calls (the shared ones with the given entries changed)
- ``GET /stats``, ``DELETE /stats`` (zero every counter)

The control routes (faults, stats, Fotor's ``/webhook``) need one of
``control_tokens`` (see ``control.py``); the provider APIs need ``api_key`` when
one is given. Every download and webhook goes through the guarded client, which
reaches public addresses and what ``allow`` lists, nothing else.

Starlette does not run the lifespan of a mounted app: a host app must enter
``sandbox.router.lifespan_context(sandbox)`` in its own lifespan (or call
``await sandbox.state.sandbox.aclose()`` at shutdown).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypedDict, Unpack

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from orchestrator.fetch.allowlist import AllowList
from orchestrator.sandbox import artnex, fotor, photio, upsampler
from orchestrator.sandbox.bodies import BodyLimits
from orchestrator.sandbox.context import RootPathRecorder, SandboxContext
from orchestrator.sandbox.control import control_denied
from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.stats import Stats

PROVIDER_NAMES = ("upsampler", "fotor", "photio", "artnex")

logger = logging.getLogger(__name__)

SANDBOX_MOUNT = "/sandbox"


class SandboxOptions(TypedDict, total=False):
    faults: Faults | None
    api_key: str | None
    allow: AllowList | None
    control_tokens: tuple[str, ...] | None
    seed: int | None
    callback_backoff_s: float
    clock: Callable[[], float] | None
    result_ttl_s: float
    max_output_pixels: int
    body_timeout_s: float


def create_sandbox_app(
    *,
    faults: Faults | None = None,
    api_key: str | None = None,
    allow: AllowList | None = None,
    control_tokens: tuple[str, ...] | None = None,
    seed: int | None = None,
    callback_backoff_s: float = 0.5,
    clock: Callable[[], float] | None = None,
    result_ttl_s: float = 3 * 3600.0,
    max_output_pixels: int = 50_000_000,
    body_timeout_s: float = 60.0,
) -> Starlette:
    """Build the sandbox app. Its state is reachable as ``app.state.sandbox``.

    ``faults`` is used as is (not copied), so a caller holding it sees and can
    make changes; ``clock`` (seconds, default ``time.monotonic``) drives result
    URL expiry after ``result_ttl_s``. ``allow`` widens where downloads and
    webhooks may go beyond public addresses (give it the sandbox's own origin and
    the service's callback origin); ``control_tokens`` guard the control routes.
    Request bodies are capped (twice the largest input, for base64) and must
    arrive within ``body_timeout_s`` (``bodies.py``).
    """
    ctx = SandboxContext(
        faults=faults if faults is not None else Faults(),
        stats=Stats(),
        rng=random.Random(seed),
        clock=clock or time.monotonic,
        api_key=api_key,
        allow=allow,
        control_tokens=control_tokens,
        callback_backoff_s=callback_backoff_s,
        result_ttl_s=result_ttl_s,
        max_output_pixels=max_output_pixels,
    )
    ups = upsampler.UpsamplerSandbox(ctx)
    fot = fotor.FotorSandbox(ctx)
    pho = photio.PhotioSandbox(ctx)
    art = artnex.ArtnexSandbox(ctx)

    async def get_faults(request: Request) -> Response:
        if (denied := control_denied(request, ctx.control_tokens)) is not None:
            return denied
        return JSONResponse(ctx.faults.as_dict())

    async def put_faults(request: Request) -> Response:
        if (denied := control_denied(request, ctx.control_tokens)) is not None:
            return denied
        try:
            values = json.loads(await request.body())
            ctx.faults.update(values)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        logger.info("sandbox faults updated: %s", values)
        return JSONResponse(ctx.faults.as_dict())

    async def reset_faults(request: Request) -> Response:
        if (denied := control_denied(request, ctx.control_tokens)) is not None:
            return denied
        ctx.faults.update(Faults().as_dict())
        ctx.provider_faults.clear()
        return JSONResponse(ctx.faults.as_dict())

    async def put_provider_faults(request: Request) -> Response:
        """One provider's own faults: the shared ones with these entries changed."""
        if (denied := control_denied(request, ctx.control_tokens)) is not None:
            return denied
        name = request.path_params["provider"]
        if name not in PROVIDER_NAMES:
            return JSONResponse({"error": f"no sandbox provider {name[:64]!r}"}, status_code=404)
        own = ctx.provider_faults.get(name) or ctx.faults.copy()
        try:
            values = json.loads(await request.body())
            own.update(values)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        ctx.provider_faults[name] = own
        logger.info("sandbox faults of %s updated: %s", name, values)
        return JSONResponse(own.as_dict())

    async def get_stats(request: Request) -> Response:
        if (denied := control_denied(request, ctx.control_tokens)) is not None:
            return denied
        return JSONResponse(ctx.stats.as_dict())

    async def reset_stats(request: Request) -> Response:
        if (denied := control_denied(request, ctx.control_tokens)) is not None:
            return denied
        ctx.stats.reset()
        return JSONResponse(ctx.stats.as_dict())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await ctx.aclose()

    app = Starlette(
        routes=[
            Mount(upsampler.API_PREFIX, routes=ups.api_routes()),
            Mount(upsampler.RESULTS_PREFIX, routes=ups.result_routes()),
            Mount(fotor.PREFIX, routes=fot.routes()),
            Mount(photio.API_PREFIX, routes=pho.routes()),
            Mount(artnex.API_PREFIX, routes=art.routes()),
            Route("/faults", get_faults, methods=["GET"]),
            Route("/faults", put_faults, methods=["PUT"]),
            Route("/faults", reset_faults, methods=["DELETE"]),
            Route("/faults/{provider}", put_provider_faults, methods=["PUT"]),
            Route("/stats", get_stats, methods=["GET"]),
            Route("/stats", reset_stats, methods=["DELETE"]),
        ],
        middleware=[
            Middleware(RootPathRecorder),
            Middleware(BodyLimits, limit=2 * ctx.max_input_bytes, timeout_s=body_timeout_s),
        ],
        lifespan=lifespan,
    )
    app.state.sandbox = ctx
    app.state.upsampler = ups
    app.state.fotor = fot
    app.state.photio = pho
    app.state.artnex = art
    return app


def standalone_app(**options: Unpack[SandboxOptions]) -> Starlette:
    """The sandbox mounted at ``/sandbox``, with its lifespan forwarded."""
    sandbox = create_sandbox_app(**options)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sandbox.router.lifespan_context(sandbox):
            yield

    app = Starlette(routes=[Mount(SANDBOX_MOUNT, app=sandbox)], lifespan=lifespan)
    app.state.sandbox = sandbox.state.sandbox
    app.state.upsampler = sandbox.state.upsampler
    app.state.fotor = sandbox.state.fotor
    app.state.photio = sandbox.state.photio
    app.state.artnex = sandbox.state.artnex
    return app
