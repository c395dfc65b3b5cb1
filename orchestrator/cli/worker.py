"""``upscale worker``: the orchestrator loops without a listener."""

from __future__ import annotations

import argparse
import asyncio
import signal

from orchestrator.cli.flags import Commands, Flags
from orchestrator.common.logs import configure
from orchestrator.common.settings import load_settings


def _worker(args: argparse.Namespace) -> int:
    from orchestrator.service.runtime import build_runtime

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    runtime = build_runtime(settings, listen_url=settings.public_url or "http://127.0.0.1:8000")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(main())
    return 0


def register(commands: Commands, flags: Flags) -> None:
    p = commands.add_parser("worker", help="the orchestrator loops only")
    p.set_defaults(func=_worker)
