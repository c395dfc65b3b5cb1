"""The console's gate, in front of every console route (pages, images, streams, static):

- security headers on every answer (a strict Content-Security-Policy: nothing but
  this service's own scripts, styles and images; no inline script; no framing);
- a session, or a 303 to the sign-in page (only the sign-in page and the static
  files are open);
- for every request that may change something (any method but GET and HEAD):
  an ``Origin`` (or, without one, ``Referer``) of this service, and the session's
  CSRF token, from the ``csrf`` field of a url-encoded form or the
  ``X-CSRF-Token`` header. A multipart upload is let through only to the paths
  whose handler checks the token itself (``upload_paths``). A refused request
  reaches no handler: it changes nothing and answers 403.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.console.session import COOKIE, Session, Sessions

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
MAX_FORM_BYTES = 64 * 1024
SESSION_KEY = "upscale.console_session"
SAFE_METHODS = frozenset({"GET", "HEAD"})
SIGN_IN = "/signin"


def console_session(scope: Scope) -> Session | None:
    session: Session | None = scope.get(SESSION_KEY)
    return session


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower case, default ports left out."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


class ConsoleGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: Sessions,
        public_origin: str,
        upload_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.public_origin = origin_of(public_origin)
        self.upload_paths = [re.compile(p) for p in upload_paths]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        # Pages are never cached; static files are named by their content's version.
        send = _with_security_headers(
            send, b"max-age=86400" if path.startswith("/static/") else b"no-store"
        )
        headers = _headers(scope)
        session = self.sessions.read(_cookie(headers.get("cookie", "")))
        scope[SESSION_KEY] = session
        method = scope["method"]
        open_path = path == SIGN_IN or path.startswith("/static/")
        if session is None and not open_path:
            target = f"{scope.get('root_path', '')}{SIGN_IN}"
            if method in SAFE_METHODS:
                target += "?next=" + quote(scope.get("root_path", "") + path, safe="/")
            await RedirectResponse(target, status_code=303)(scope, receive, send)
            return
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if not self._same_origin(scope, headers):
            await _refuse("This request did not come from this service's own pages.")(
                scope, receive, send
            )
            return
        if session is None:  # the sign-in form: there is no session yet to hold a token
            await self.app(scope, receive, send)
            return
        if self.sessions.csrf_ok(session, headers.get("x-csrf-token")):
            await self.app(scope, receive, send)
            return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            body = await _read_form(receive)
            if body is None:
                await _refuse("The form is too large.", 413)(scope, receive, send)
                return
            fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
            token = next(iter(fields.get("csrf", [])), None)
            if not self.sessions.csrf_ok(session, token):
                await _refuse("The form's CSRF token is missing or wrong; reload the page.")(
                    scope, receive, send
                )
                return
            await self.app(scope, _replay(body, receive), send)
            return
        if content_type == "multipart/form-data" and any(
            p.fullmatch(path) for p in self.upload_paths
        ):
            await self.app(scope, receive, send)  # its handler checks the token
            return
        await _refuse("The form's CSRF token is missing or wrong; reload the page.")(
            scope, receive, send
        )

    def _same_origin(self, scope: Scope, headers: dict[str, str]) -> bool:
        claimed = headers.get("origin")
        if claimed is None:
            referer = headers.get("referer")
            if referer is None:
                return False
            claimed = referer
        origin = origin_of(claimed)
        if origin is None:
            return False
        own = {self.public_origin}
        host = headers.get("host")
        if host:
            own.add(origin_of(f"{scope.get('scheme', 'http')}://{host}"))
        return origin in own - {None}


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key not in out:  # the first of repeated headers
            out[key] = value.decode("latin-1")
    return out


def _cookie(header: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


async def _read_form(receive: Receive) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, then: Receive) -> Receive:
    """The body already read, then whatever comes next (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


def _refuse(message: str, status: int = 403) -> Response:
    return HTMLResponse(
        "<!doctype html><title>Refused</title><h1>Refused</h1><p>"
        + message
        + '</p><p><a href="/console/">Back to the console</a></p>',
        status_code=status,
    )


def _with_security_headers(send: Send, cache_control: bytes) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
            if b"cache-control" not in names:
                extra.append((b"cache-control", cache_control))
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
