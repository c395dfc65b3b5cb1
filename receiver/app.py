"""The Starlette app factory: routes, error handling and a lifespan that owns the runtime."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from orchestrator.local.app import LOCAL_MOUNT, create_local_app
from orchestrator.sandbox.app import create_sandbox_app
from orchestrator.sandbox.faults import Faults
from orchestrator.service.runtime import Runtime, local_api_key, sandbox_api_key
from receiver import (
    events,
    health,
    jobs,
    metrics,
    openapi,
    operations,
    providers,
    subscriptions,
)
from receiver.callback_door import ROUTE, CallbackDoor, callback_target
from receiver.console.app import create_console
from receiver.errors import handle_http_exception, handle_upscale_error
from receiver.unexpected import UnexpectedErrors
from receiver.uploads import UploadSlots
from schemas.errors import UpscaleError

log = logging.getLogger(__name__)


class ServiceApp(Starlette):
    """The Starlette app with the callback route answered in front of it
    (``callback_door.py``); every other request goes through the app as usual."""

    callbacks: CallbackDoor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = callback_target(scope)
        if target is None:
            await super().__call__(scope, receive, send)
        else:
            await self.callbacks(scope, receive, send, *target)


def create_app(
    runtime: Runtime, *, with_sandbox: bool | None = None, tune_gc: bool = False
) -> ServiceApp:
    """Build the app around a runtime. The sandbox is mounted when the runtime says so
    (``Runtime.sandbox_mount``: only on a service private to this machine, or when
    ``UPSCALE_SANDBOX=on``); ``with_sandbox`` overrides that, for tests.

    ``tune_gc`` is for a process that serves this one app (the ASGI entry point):
    see ``settle_gc``."""
    door = CallbackDoor(runtime)
    routes: list[BaseRoute] = [
        # Answered in front of the table (ServiceApp); listed for what reaches the
        # table all the same: another method at this path (405).
        Route(ROUTE, door.route_endpoint, methods=["POST"]),
        # Probed every few seconds: matched before the long list below.
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/v1/jobs", jobs.create_job, methods=["POST"]),
        Route("/v1/jobs", jobs.list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}", jobs.cancel_job, methods=["DELETE"]),
        Route("/v1/jobs/{job_id}/history", jobs.job_history, methods=["GET"]),
        Route("/v1/jobs/{job_id}/result", jobs.job_result, methods=["GET"]),
        Route("/inputs/{token}", jobs.serve_input, methods=["GET"]),
        Route("/v1/events", events.list_events, methods=["GET"]),
        Route("/v1/events/stream", events.stream_events, methods=["GET"]),
        Route("/v1/events/{event_id}", events.get_event, methods=["GET"]),
        Route("/v1/events/{event_id}/redeliver", events.redeliver, methods=["POST"]),
        Route("/v1/subscriptions", subscriptions.create, methods=["POST"]),
        Route("/v1/subscriptions", subscriptions.list_all, methods=["GET"]),
        Route("/v1/subscriptions/{subscription_id}", subscriptions.show, methods=["GET"]),
        Route("/v1/subscriptions/{subscription_id}", subscriptions.delete, methods=["DELETE"]),
        Route(
            "/v1/subscriptions/{subscription_id}/secret",
            subscriptions.rotate_secret,
            methods=["POST"],
        ),
        Route("/v1/subscriptions/{subscription_id}/enable", subscriptions.enable, methods=["POST"]),
        Route(
            "/v1/subscriptions/{subscription_id}/deliveries",
            subscriptions.deliveries,
            methods=["GET"],
        ),
        Route("/v1/deliveries", operations.list_deliveries, methods=["GET"]),
        Route("/v1/deliveries/replay", operations.replay_deliveries, methods=["POST"]),
        Route("/v1/deliveries/{delivery_id}", operations.show_delivery, methods=["GET"]),
        Route("/v1/deliveries/{delivery_id}/replay", operations.replay_delivery, methods=["POST"]),
        Route("/v1/inject/{provider}", operations.inject, methods=["POST"]),
        Route("/v1/reconcile", operations.reconcile_many, methods=["POST"]),
        Route("/v1/stuck", operations.stuck, methods=["GET"]),
        Route("/v1/jobs/{job_id}/reconcile", operations.reconcile_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/retry", operations.retry_job, methods=["POST"]),
        Route("/v1/providers", providers.list_providers, methods=["GET"]),
        Route("/v1/providers/{provider}/balance", providers.provider_balance, methods=["GET"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi, methods=["GET"]),
    ]
    mount_sandbox = runtime.sandbox_mount.mounted if with_sandbox is None else with_sandbox
    sandbox = None
    if mount_sandbox:
        sandbox = create_sandbox_app(
            faults=Faults.parse(runtime.settings.sandbox_faults),
            api_key=sandbox_api_key(runtime.signing_keys),
            allow=runtime.own_allow,
            control_tokens=tuple(token.reveal() for token in runtime.api_tokens),
            body_timeout_s=runtime.settings.body_timeout_s,
        )
        routes.append(Mount("/sandbox", app=sandbox))

    settings = runtime.settings
    local = create_local_app(
        api_key=local_api_key(runtime.signing_keys),
        work_dir=settings.data_dir / "local",
        workers=settings.local_workers,
        max_input_pixels=settings.local_max_pixels,
        max_concurrent_jobs=settings.local_max_jobs,
        default_engine=settings.local_engine,
        allow=runtime.own_allow,
    )
    routes.append(Mount(LOCAL_MOUNT, app=local))
    if settings.console:
        routes.append(Mount("/console", app=create_console(runtime)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(local.router.lifespan_context(local))
            if sandbox is not None:
                await stack.enter_async_context(sandbox.router.lifespan_context(sandbox))
                fotor = runtime.settings.providers.get("fotor")
                if "fotor" in runtime.sandboxed and fotor is not None and not fotor.base_url:
                    # At Fotor the account webhook is set in a dashboard; the built-in
                    # sandbox gets ours directly.
                    sandbox.state.fotor.webhook_url = runtime.orchestrator.account_callback_url(
                        "fotor"
                    )
            await runtime.start()
            stack.push_async_callback(runtime.stop)
            _announce(runtime)
            if tune_gc:
                settle_gc()
            yield

    app = ServiceApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(UnexpectedErrors)],
        exception_handlers={
            UpscaleError: handle_upscale_error,
            HTTPException: handle_http_exception,
        },
    )
    app.state.runtime = runtime
    app.callbacks = door
    app.state.upload_slots = UploadSlots(settings.max_concurrent_uploads)
    return app


# Allocations between young-generation collections (CPython's default is 700). A
# request allocates a few hundred objects, nearly all freed by reference counting.
GC_GEN0_THRESHOLD = 50_000


def settle_gc() -> None:
    """Once start-up is done: move everything allocated so far (modules, routes, the
    runtime) out of the collector's sight, and collect the young generation less
    often. The cyclic collector then stops re-scanning long-lived objects on the
    request path; reference counting still frees everything at once."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _announce(runtime: Runtime) -> None:
    live = sorted(set(runtime.providers) - set(runtime.sandboxed))
    log.info(
        "service.started",
        extra={
            "action": "started",
            "public_url": runtime.orchestrator.config.public_base,
            "live_providers": ",".join(live) or "-",
            "sandboxed_providers": ",".join(runtime.sandboxed) or "-",
            "unavailable_providers": ",".join(sorted(runtime.unavailable)) or "-",
        },
    )
    mount = runtime.sandbox_mount
    log.info(
        "sandbox.mounted" if mount.mounted else "sandbox.not_mounted",
        extra={"action": "sandbox", "mounted": mount.mounted, "reason": mount.reason},
    )
    if runtime.api_token_file is not None:
        log.info(
            "api.token",
            extra={
                "action": "token_generated",
                "token_file": str(runtime.api_token_file.resolve()),
            },
        )
