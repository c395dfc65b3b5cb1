"""The service app (``receiver.asgi:app``) with timers around the callback path.

For the callback benchmark's profiling hints only: run it like the real app
(``python -m tests.bench.serve --app tests.bench.instrumented:app``). Timers are
wrapped around, never changed into, the product code, in this process only:

* the whole callback handler, and ``Orchestrator.receive`` (store + commit);
* ``record_delivery`` (queued until its group is committed), the wait for the
  store's write lock and how long a writer holds it (the inbox loop's and the
  inbox writer's, which holds it for a run of groups);
* how late the event loop runs a 5 ms timer (its lag under load).

At exit the figures are written as JSON to ``$UPSCALE_BENCH_STATS``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import time
from collections import Counter, defaultdict
from typing import Any, Literal

from orchestrator.core.engine import Orchestrator
from orchestrator.store.sqlite import SQLiteStore
from receiver.callback_door import CallbackDoor

SAMPLES: defaultdict[str, list[float]] = defaultdict(list)
COUNTS: Counter[str] = Counter()
_lag_task: asyncio.Task[None] | None = None


class TimedLock(asyncio.Lock):
    _held_since = 0.0

    async def acquire(self) -> Literal[True]:
        started = time.perf_counter()
        got = await super().acquire()
        now = time.perf_counter()
        SAMPLES["write lock: wait to acquire"].append(now - started)
        self._held_since = now
        return got

    def release(self) -> None:
        SAMPLES["write lock: held by a write transaction"].append(
            time.perf_counter() - self._held_since
        )
        COUNTS["write transactions"] += 1
        super().release()


_original_init = SQLiteStore.__init__


def _init(self: SQLiteStore, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self._write_lock = TimedLock()


SQLiteStore.__init__ = _init  # type: ignore[method-assign]

_original_record = SQLiteStore.record_delivery


async def _record(self: SQLiteStore, new: Any) -> Any:
    started = time.perf_counter()
    try:
        return await _original_record(self, new)
    finally:
        SAMPLES["record_delivery: queued until committed"].append(time.perf_counter() - started)


SQLiteStore.record_delivery = _record  # type: ignore[method-assign]

_original_receive = Orchestrator.receive


async def _receive(self: Orchestrator, *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    try:
        return await _original_receive(self, *args, **kwargs)
    finally:
        SAMPLES["Orchestrator.receive (hash, store, commit)"].append(time.perf_counter() - started)


Orchestrator.receive = _receive  # type: ignore[method-assign]

_original_handler = CallbackDoor.__call__


async def _lag_probe() -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        SAMPLES["event loop: lateness of a 5 ms timer"].append(
            time.perf_counter() - started - 0.005
        )


async def _handler(self: CallbackDoor, *args: Any) -> None:
    global _lag_task
    if _lag_task is None:
        _lag_task = asyncio.get_running_loop().create_task(_lag_probe())
    started = time.perf_counter()
    try:
        await _original_handler(self, *args)
    finally:
        SAMPLES["callback handler: total"].append(time.perf_counter() - started)
        COUNTS["callbacks"] += 1


CallbackDoor.__call__ = _handler  # type: ignore[method-assign]

from receiver.asgi import app  # noqa: E402  (the patches must come first)

__all__ = ["app"]


def _pct(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, round((len(data) - 1) * p / 100))] if data else 0.0


@atexit.register
def _dump() -> None:
    path = os.environ.get("UPSCALE_BENCH_STATS")
    if not path:
        return
    out: dict[str, Any] = {"counts": dict(COUNTS), "timers": {}}
    for name, values in SAMPLES.items():
        out["timers"][name] = {
            "n": len(values),
            "mean_ms": 1000 * sum(values) / len(values) if values else 0.0,
            "p50_ms": 1000 * _pct(values, 50),
            "p99_ms": 1000 * _pct(values, 99),
        }
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
