"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.auth import runtime_of
from receiver.errors import RETRY_AFTER_S
from schemas.errors import StoreUnavailable


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await runtime_of(request).store.ping()
    except StoreUnavailable as exc:
        return JSONResponse(
            {"status": "unavailable", "error": exc.message},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return JSONResponse({"status": "ready"})
