"""Reading the event feed: by cursor, or as a live async iterator.

For code running beside the service::

    async for event in follow_events(store, after="evt_0000000000000041"):
        handle(json.loads(event.body))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from orchestrator.common.signals import Broadcast
from orchestrator.domain.events import event_seq
from orchestrator.store.outbox import EventRecord
from schemas.errors import RejectedInput


class EventStore(Protocol):
    events_written: Broadcast

    async def list_events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] | None = None,
        job_id: str | None = None,
    ) -> list[EventRecord]: ...


def cursor(after: str | None) -> int:
    """The sequence number of a cursor (an event id); RejectedInput if it is not one."""
    if after is None or after == "":
        return 0
    seq = event_seq(after)
    if seq is None:
        raise RejectedInput(f"not an event id: {after!r}")
    return seq


async def follow_events(
    store: EventStore,
    *,
    after: str | None = None,
    types: Sequence[str] | None = None,
    poll_s: float = 1.0,
    batch: int = 200,
) -> AsyncIterator[EventRecord]:
    """Every event after ``after``, oldest first, then live ones as they are written.

    Wakes as soon as this process writes an event, and polls every ``poll_s``
    seconds for events written by other processes.
    """
    async for event in follow_events_or_idle(
        store, after=after, types=types, poll_s=poll_s, batch=batch
    ):
        if event is not None:
            yield event


async def follow_events_or_idle(
    store: EventStore,
    *,
    after: str | None = None,
    types: Sequence[str] | None = None,
    poll_s: float = 1.0,
    batch: int = 200,
) -> AsyncIterator[EventRecord | None]:
    """Like :func:`follow_events`, and yields None whenever ``poll_s`` seconds pass idle."""
    seq = cursor(after)
    while True:
        # Take the wake-up before reading, so an event written meanwhile still wakes us.
        woken = asyncio.ensure_future(store.events_written.wait(poll_s))
        try:
            events = await store.list_events(after=seq, limit=batch, types=types)
            for event in events:
                seq = event.seq
                yield event
            if len(events) < batch and not await woken:
                yield None  # nothing for poll_s seconds (time for a heartbeat)
        finally:
            woken.cancel()
