"""Writing down what cannot be asked for again: retry a store write that failed.

A provider's answer to a submit is in hand only once. If the write that records
it fails (the database is briefly busy or unreachable), dropping it would leave
the job ``submitting`` until its lease runs out, then ``uncertain``, without the
provider's job id: a paid job nobody can follow. So such writes are retried,
within the time the job's submit lease still has to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from schemas.errors import StoreUnavailable

T = TypeVar("T")

# Waits between attempts: about 16 s in all, well inside the margin a submitting
# job is held beyond its call's timeout (engine.SUBMIT_LEASE_MARGIN_S).
STORE_RETRY_S: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


async def until_stored(
    write: Callable[[], Awaitable[T]],
    *,
    waits_s: Sequence[float] = STORE_RETRY_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[StoreUnavailable, int], None] | None = None,
) -> T:
    """Run ``write``; on StoreUnavailable wait and run it again, once per entry of
    ``waits_s``. The last failure is raised. ``write`` must be safe to repeat (a
    compare-and-set that already took effect is a no-op the second time)."""
    for attempt, wait in enumerate(waits_s, start=1):
        try:
            return await write()
        except StoreUnavailable as exc:
            if on_retry is not None:
                on_retry(exc, attempt)
            await sleep(wait)
    return await write()
