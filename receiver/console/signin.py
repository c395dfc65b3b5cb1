"""Sign in with an API token (the JSON API's bearer tokens), and sign out."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.security.sources import client_address
from receiver.console.pages import BASE, render, runtime_of
from receiver.console.session import Sessions
from receiver.console.throttle import SignInThrottle

MAX_TOKEN_CHARS = 512
log = logging.getLogger(__name__)


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _next_path(raw: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if raw and raw.startswith(BASE + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return BASE + "/"


def _client(request: Request) -> str:
    """The caller's address, through the proxies ``UPSCALE_TRUSTED_PROXIES`` names."""
    peer = request.client.host if request.client else None
    trusted = runtime_of(request).sources.trusted_proxies
    address = client_address(peer, request.headers.get("x-forwarded-for"), trusted)
    return str(address) if address is not None else "-"


async def sign_in_page(request: Request) -> Response:
    return render(request, "signin.html", {"next": _next_path(request.query_params.get("next"))})


async def sign_in(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=8)
    token = form.get("token")
    target = _next_path(str(form.get("next") or ""))
    client = _client(request)
    throttle: SignInThrottle = request.app.state.signin_throttle
    now = runtime_of(request).orchestrator.clock.now().timestamp()
    wait = throttle.wait_s(client, now)
    if wait > 0:
        response = render(
            request,
            "signin.html",
            {"next": target, "error": f"Too many failed sign-ins: try again in {wait:.0f} s."},
            status_code=429,
        )
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    cookie = None
    if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_CHARS:
        cookie = _sessions(request).sign_in(token)
    if cookie is None:
        throttle.failed(client, now)
        log.warning("console.signin_refused", extra={"action": "signin_refused", "client": client})
        return render(
            request,
            "signin.html",
            {"next": target, "error": "That is not one of this service's API tokens."},
            status_code=401,
        )
    throttle.succeeded(client)
    log.info("console.signed_in", extra={"action": "signed_in", "client": client})
    response = RedirectResponse(target, status_code=303)
    response.headers.append("set-cookie", _sessions(request).cookie_header(cookie))
    return response


async def sign_out(request: Request) -> Response:
    response = RedirectResponse(f"{BASE}/signin", status_code=303)
    response.headers.append("set-cookie", _sessions(request).cleared_cookie_header())
    return response


routes: list[BaseRoute] = [
    Route("/signin", sign_in_page, methods=["GET"]),
    Route("/signin", sign_in, methods=["POST"]),
    Route("/signout", sign_out, methods=["POST"]),
]
