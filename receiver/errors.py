"""Turn the project's errors into clear JSON answers (never a 500 for bad input)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.errors import NotFound, StoreUnavailable, UpscaleError

log = logging.getLogger(__name__)


def error_response(exc: UpscaleError) -> JSONResponse:
    # Nothing was stored: a client (or provider) should come back, not give up.
    headers = {"Retry-After": "5"} if isinstance(exc, StoreUnavailable) else None
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}},
        status_code=exc.status_code,
        headers=headers,
    )


async def handle_upscale_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UpscaleError)
    route = request.scope.get("route")
    path = getattr(route, "path", "?")
    level = logging.WARNING if exc.status_code < 500 else logging.ERROR
    log.log(
        level,
        "request.rejected",
        extra={"action": exc.code, "route": path, "status": exc.status_code, "error": exc.message},
    )
    if isinstance(exc, NotFound) and path.startswith("/callbacks"):
        # Reveal nothing about why a callback URL is not accepted.
        return JSONResponse({"error": {"code": "not_found", "message": "not found"}}, 404)
    return error_response(exc)
