"""``GET /metrics``: Prometheus text format (same bearer token as the API)."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from receiver.auth import require_token


async def metrics(request: Request) -> Response:
    runtime = require_token(request)
    now = runtime.orchestrator.clock.now()
    await runtime.metrics.refresh(
        runtime.store,
        now=now,
        stuck_before=now - timedelta(seconds=runtime.settings.stuck_after_s),
    )
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
