"""uvicorn's server, not woken while it has nothing to do.

uvicorn's main loop wakes ten times a second, to see whether it should exit and
to renew the ``Date`` header once a second. On an idle service those wake-ups
are most of the CPU it uses: each costs the event loop's thread a turn, and on a
virtual machine a switch into its host as well. This server

- learns that it should exit when it is told: setting ``should_exit`` (a signal
  handler, a test, a supervisor) wakes its main loop at once;
- renews the ``Date`` header once a second while connections are open, and not
  at all while none is (nothing is answered then): the first connection after a
  quiet spell renews it before its request is read, and starts the ticks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import uvicorn

# uvicorn counts ticks of 0.1 s and renews the Date header every tenth.
_TICKS_PER_SECOND = 10
_TICK_S = 1.0


class _Connections(set[Any]):
    """The server's open connections, telling it of the first after a quiet spell."""

    def __init__(self, first: Callable[[], None]) -> None:
        super().__init__()
        self._first = first

    def add(self, connection: Any) -> None:
        if not self:
            self._first()
        super().add(connection)


class QuietServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = False
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        # Whether the main loop waits without ticking (no connection was open).
        self._resting = False
        super().__init__(config)
        self.server_state.connections = _Connections(self._first_connection)

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
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _TICKS_PER_SECOND) % 864000
            event.clear()
            if self.should_exit:
                break
            self._resting = not self.server_state.connections
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), None if self._resting else _TICK_S)
            self._resting = False
            should_exit = await self.on_tick(counter)

    def _first_connection(self) -> None:
        """On the event loop, as the connection is made: before its request is read."""
        if not self._resting or self._wake is None:
            return
        date = formatdate(time.time(), usegmt=True).encode()
        headers = [(b"date", date)] if self.config.date_header else []
        self.server_state.default_headers = headers + self.config.encoded_headers
        self._resting = False
        self._wake[1].set()
