"""Deadlines of many things kept by one timer, rather than a timer each.

On the request path a timer armed and cancelled per request costs a tenth of a
callback; a deadline here costs a dict entry. While any deadline is set, the
timer looks every ``tick_s`` for those that have passed and hands each to
``expire``. A deadline is kept to within ``tick_s``.
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
        # The loop the timer runs on.
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, key: K, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.due[key] = loop.time() + timeout_s
        # (Something may outlive an event loop, as an app does in tests: a timer of an
        # earlier loop would never fire, so one is armed on this loop.)
        if self._timer is None or self.loop is not loop:
            self.loop = loop
            self._timer = loop.call_later(self.tick_s, self._sweep, loop)

    def stop(self, key: K) -> None:
        self.due.pop(key, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for key in [k for k, due in self.due.items() if due <= now]:
            del self.due[key]
            if self._loop_of(key) is loop:  # (one of an earlier loop is dropped)
                self._expire(key)
        if self.due:
            self._timer = loop.call_later(self.tick_s, self._sweep, loop)
