"""The operator console, a Starlette app mounted at ``/console`` by ``receiver.app``.

Server-rendered pages (``templates/``), the project's own CSS and JavaScript
(``static/``), every route behind :class:`receiver.console.guard.ConsoleGuard`.
It reads and acts through the orchestrator's verbs, as the JSON API does.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from orchestrator.service.runtime import Runtime
from receiver.console.guard import ConsoleGuard, origin_of
from receiver.console.pages import BASE, STATIC_DIR, render
from receiver.console.providers import Balances
from receiver.console.routes import ROUTES, UPLOAD_PATHS
from receiver.console.session import Sessions
from receiver.console.throttle import SignInThrottle
from receiver.uploads import UploadSlots
from schemas.errors import UpscaleError


def create_console(runtime: Runtime) -> Starlette:
    public = runtime.orchestrator.config.public_base
    clock = runtime.orchestrator.clock
    sessions = Sessions(
        runtime.signing_keys,
        runtime.api_tokens,
        secure=public.startswith("https://"),
        clock=lambda: clock.now().timestamp(),
    )
    console = Starlette(
        routes=[*ROUTES, Mount("/static", app=StaticFiles(directory=STATIC_DIR))],
        middleware=[
            Middleware(
                ConsoleGuard,
                sessions=sessions,
                public_origin=origin_of(public) or public,
                upload_paths=UPLOAD_PATHS,
            )
        ],
        exception_handlers={UpscaleError: _upscale_error, HTTPException: _http_error},
    )
    console.state.runtime = runtime
    console.state.sessions = sessions
    console.state.balances = Balances()
    console.state.signin_throttle = SignInThrottle()
    # Uploads from the console's submit form take slots of their own (same limit).
    console.state.upload_slots = UploadSlots(runtime.settings.max_concurrent_uploads)
    return console


def _back(request: Request) -> str:
    return f"{BASE}/"


async def _upscale_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UpscaleError)
    status = exc.status_code if 400 <= exc.status_code < 600 else 500
    return render(
        request,
        "error.html",
        {"status": status, "title": "Not done", "message": str(exc), "back": _back(request)},
        status_code=status,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = "Not found" if exc.status_code == 404 else "Not done"
    return render(
        request,
        "error.html",
        {"status": exc.status_code, "title": title, "message": exc.detail, "back": f"{BASE}/"},
        status_code=exc.status_code,
    )
