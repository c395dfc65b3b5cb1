"""What every console page shares: the templates, the session, rendering a page.

Templates are Jinja2 with autoescaping on for everything; a page passes its own
values, and :func:`render` adds the session's CSRF token (``csrf``), the mount
path (``base``), the navigation and the static files' version.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from orchestrator.service.runtime import Runtime
from receiver.console.guard import console_session
from receiver.console.session import Session

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
BASE = "/console"

# (label, path under /console, the page's key for the active tab)
NAVIGATION: tuple[tuple[str, str, str], ...] = (
    ("Overview", "/", "overview"),
    ("Jobs", "/jobs", "jobs"),
    ("Inbox", "/inbox", "inbox"),
    ("Events", "/events", "events"),
    ("Subscriptions", "/subscriptions", "subscriptions"),
    ("Providers", "/providers", "providers"),
)


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.glob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = _when
_env.filters["size"] = _size
_env.globals["navigation"] = NAVIGATION
_env.globals["base"] = BASE
_env.globals["static_version"] = _static_version()
templates = Jinja2Templates(env=_env)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def session_of(request: Request) -> Session:
    """The request's session; the guard lets no request without one reach a page."""
    session = console_session(request.scope)
    if session is None:
        raise RuntimeError("a console page was reached without a session")
    return session


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    page: str = "",
    status_code: int = 200,
) -> Response:
    session = console_session(request.scope)
    values: dict[str, Any] = {
        "page": page,
        "csrf": session.csrf if session else "",
        "signed_in": session is not None,
        **(context or {}),
    }
    return templates.TemplateResponse(request, template, values, status_code=status_code)


def render_fragment(template: str, context: dict[str, Any]) -> Response:
    """A piece of a page (no layout), for the live updates of ``static/console.js``."""
    return HTMLResponse(_env.get_template(template).render(**context))
