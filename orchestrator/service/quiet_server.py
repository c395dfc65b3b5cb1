"""uvicorn's server, not woken while it has nothing to do.

uvicorn's main loop wakes ten times a second, to see whether it should exit and
to renew the ``Date`` header once a second. On an idle service those wake-ups
are most of the CPU it uses: each costs the event loop's thread a turn, and on a
virtual machine a switch into its host as well. This server's main loop sleeps
until it is told to exit: setting ``should_exit`` (a signal handler, a test, a
supervisor) wakes it at once. The ``Date`` header is renewed by the listener's
protocol instead, when a request comes in a new second
(``orchestrator/service/listener.py``), so it must run with that protocol.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn


class QuietServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = False
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit_requested

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit_requested = value
        wake = self._wake
        if value and wake is not None:
            loop, event = wake
            # From a signal handler or another thread as well as from the loop.
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(event.set)

    async def main_loop(self) -> None:
        event = asyncio.Event()
        self._wake = (asyncio.get_running_loop(), event)
        should_exit = await self.on_tick(0)
        while not should_exit:
            event.clear()
            if self.should_exit:
                break
            await event.wait()
            should_exit = await self.on_tick(0)
