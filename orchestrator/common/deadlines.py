"""Deadlines of many things kept by one timer, rather than a timer each.

On the request path a timer armed and cancelled per request costs a tenth of a
callback; a deadline here costs a dict entry. The timer fires when the earliest
deadline passes (no sooner than ``tick_s`` after it last fired, so that
deadlines passing close together are handed to ``expire`` together), and is not
armed while none is set: nothing wakes for deadlines that lie far ahead. A
deadline is kept to within ``tick_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    def __init__(
        self,
        tick_s: float,
        expire: Callable[[K], None],
        loop_of: Callable[[K], asyncio.AbstractEventLoop],
    ) -> None:
        self.tick_s = tick_s
        self._expire = expire
        self._loop_of = loop_of
        # Thing -> when its deadline passes (on its loop's clock). Callers on a hot
        # path may pop from it directly.
        self.due: dict[K, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        # When the timer fires (on its loop's clock).
        self._at = 0.0
        # The loop the timer runs on.
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, key: K, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        due = loop.time() + timeout_s
        self.due[key] = due
        # (Something may outlive an event loop, as an app does in tests: a timer of an
        # earlier loop would never fire, so one is armed on this loop.) A deadline
        # later than the timer, as every one of the same length set after it, is
        # looked at when it fires.
        if self._timer is None or self.loop is not loop or due + self.tick_s < self._at:
            self._arm(loop, due)

    def stop(self, key: K) -> None:
        self.due.pop(key, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._timer is not None and self.loop is loop:
            self._timer.cancel()
        self.loop = loop
        self._at = max(due, loop.time() + self.tick_s)
        self._timer = loop.call_at(self._at, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for key in [k for k, due in self.due.items() if due <= now]:
            del self.due[key]
            if self._loop_of(key) is loop:  # (one of an earlier loop is dropped)
                self._expire(key)
        if self.due:
            self._arm(loop, min(self.due.values()))
