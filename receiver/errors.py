"""Turn the project's errors into clear JSON answers (never a 500 for bad input).

Every error answer has one shape, ``{"error": {"code", "message"}}``: the
project's own errors, and Starlette's routing and parsing errors (unknown path,
method not allowed, a multipart body without a boundary) translated into the
error tree here, at the boundary.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from schemas.errors import (
    BodyTimeout,
    ClientGone,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RejectedInput,
    TooManyUploads,
    UpscaleError,
)

log = logging.getLogger(__name__)

# How long a client should wait before retrying an answer that says "try again".
RETRY_AFTER_S = 5


def error_response(exc: UpscaleError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allowed)
    if exc.retryable and exc.status_code == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if isinstance(exc, TooManyUploads):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, BodyTimeout | ClientGone):
        # The rest of the body is not read: the connection cannot carry another request.
        headers["Connection"] = "close"
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}},
        status_code=exc.status_code,
        headers=headers,
    )


async def handle_upscale_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, UpscaleError):  # registered for UpscaleError only
        raise exc
    route = request.scope.get("route")
    path = getattr(route, "path", "?")
    if isinstance(exc, ClientGone):
        # Routine on the internet (a closed tab, a dropped link): one debug line.
        log.debug("request.abandoned", extra={"action": exc.code, "route": path})
        return error_response(exc)
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


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (routing, form parsing) in the project's terms."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    return await handle_upscale_error(request, translate_http_exception(request, exc))


def translate_http_exception(request: Request, exc: HTTPException) -> UpscaleError:
    if exc.status_code == 404:
        return NotFound("no such route")
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        return MethodNotAllowed(f"{request.method} is not allowed here", allowed)
    if exc.status_code == 413:
        return PayloadTooLarge(exc.detail)
    # The rest come from parsing the request, e.g. "Missing boundary in multipart.":
    # fixed messages of the parser's, never the body.
    return RejectedInput(exc.detail)


def allowed_methods(request: Request) -> tuple[str, ...]:
    """Every method some route of the app takes at this request's path.

    Starlette's own ``Allow`` names only the first route that matches the path,
    and this app declares one route per method."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods.update(route.methods)
    return tuple(sorted(methods))
