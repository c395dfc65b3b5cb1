"""``upscale serve``: the receiver and the orchestrator loops in one process.

The app is built here from one ``Settings`` and handed to uvicorn as an object.
Its factory is named by import string (:data:`APP_FACTORY`) so that this layer
does not import the receiver; ``receiver/asgi.py`` is for ASGI servers started
some other way, and reads the environment itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.cli.flags import Commands, Flags
from orchestrator.common.logs import configure
from orchestrator.common.settings import Settings, load_settings

if TYPE_CHECKING:
    import uvicorn

    from orchestrator.service.runtime import Runtime

# The other commands do not pay for importing the server and the runtime: those
# imports are made where they are used.

APP_FACTORY = "receiver.app:create_app"


class AppFactory(Protocol):
    def __call__(self, runtime: Runtime, *, tune_gc: bool = ...) -> Any: ...


def listen_url(host: str, port: int) -> str:
    """Where this process reaches its own listener (a wildcard host through loopback)."""
    local_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    return f"http://{local_host}:{port}"


def build_app(
    settings: Settings,
    *,
    host: str,
    port: int,
    web_only: bool = False,
    allow_new_database: bool = False,
    factory: AppFactory | None = None,
) -> Any:
    """The ASGI app ``upscale serve`` runs, from ``settings`` and the command's flags."""
    from uvicorn.importer import import_from_string

    from orchestrator.service.runtime import build_runtime

    if allow_new_database:
        settings = dataclasses.replace(settings, allow_new_database=True)
    runtime = build_runtime(
        settings,
        listen_url=listen_url(host, port),
        # What the listener binds: the sandbox is mounted only on a loopback host
        # (see orchestrator/sandbox/exposure.py).
        bind_host=host,
        # A web process of a multi-process deployment answers HTTP only; workers run
        # the loops.
        run_loops=not web_only,
    )
    create_app: AppFactory = factory or import_from_string(APP_FACTORY)
    return create_app(runtime, tune_gc=True)


def build_server(settings: Settings, app: Any, *, host: str, port: int) -> uvicorn.Server:
    from orchestrator.service.listener import server

    return server(settings, app, host=host, port=port)


def run_server(server: uvicorn.Server) -> int:
    """Serve until a signal; the exit code of ``uvicorn.run``: 0, or 3 if start-up
    failed (uvicorn may also exit with 3 by itself)."""
    from uvicorn.config import STARTUP_FAILURE

    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else STARTUP_FAILURE


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    app = build_app(
        settings,
        host=args.host,
        port=args.port,
        web_only=args.web_only,
        allow_new_database=args.allow_new_database,
    )
    return run_server(build_server(settings, app, host=args.host, port=args.port))


def register(commands: Commands, flags: Flags) -> None:
    p = commands.add_parser("serve", help="receiver and orchestrator loops in one process")
    p.add_argument("--host", default=os.environ.get("UPSCALE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p.add_argument(
        "--web-only",
        action="store_true",
        help="answer HTTP only and leave the loops to `upscale worker` processes (PostgreSQL)",
    )
    p.add_argument(
        "--allow-new-database",
        action="store_true",
        help="start on a new empty SQLite database even where the data directory says "
        "there was one (UPSCALE_ALLOW_NEW_DATABASE=1)",
    )
    p.set_defaults(func=_serve)
