"""``upscale sandbox``: all sandbox providers in one standalone server."""

from __future__ import annotations

import argparse

from orchestrator.cli.flags import Commands, Flags
from orchestrator.common.logs import configure
from orchestrator.common.settings import load_settings


def _sandbox(args: argparse.Namespace) -> int:
    from orchestrator.cli.serve import run_server
    from orchestrator.sandbox.app import standalone_app
    from orchestrator.sandbox.faults import Faults
    from orchestrator.sandbox.outbound import standalone_allow
    from orchestrator.security.bootstrap_secrets import api_tokens
    from orchestrator.service.listener import server

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    # Its control routes take the service's API tokens (UPSCALE_API_TOKENS, or the
    # token generated into the data directory, as `upscale serve` does).
    tokens, _ = api_tokens(settings.api_tokens, settings.data_dir)
    app = standalone_app(
        faults=Faults.parse(settings.sandbox_faults),
        allow=standalone_allow(settings, host=args.host, port=args.port),
        control_tokens=tuple(token.reveal() for token in tokens),
        body_timeout_s=settings.body_timeout_s,
    )
    # The listener of `upscale serve`: header and keep-alive deadlines, the header
    # cap, the connection limit, and no belief in forwarded headers.
    return run_server(server(settings, app, host=args.host, port=args.port))


def register(commands: Commands, flags: Flags) -> None:
    p = commands.add_parser("sandbox", help="all sandbox providers in one standalone server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.set_defaults(func=_sandbox)
