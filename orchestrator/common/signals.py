"""A broadcast wake-up: every waiter wakes on ``notify``, none has to clear anything."""

from __future__ import annotations

import asyncio


class Broadcast:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, limit_s: float | None = None) -> bool:
        """Wait for the next notify; False if ``limit_s`` seconds passed first."""
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), limit_s)
        except TimeoutError:
            return False
        return True
