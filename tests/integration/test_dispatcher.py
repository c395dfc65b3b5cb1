"""The webhook dispatcher's loop: it sleeps while a subscriber is down."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from pathlib import Path

import httpx

from orchestrator.common.clock import FakeClock
from orchestrator.domain.states import Event
from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.transport import make_guarded_client
from orchestrator.outbound.dispatcher import Dispatcher
from orchestrator.outbound.schedule import RetrySchedule
from orchestrator.outbound.subscriptions import new_subscription
from orchestrator.store.outbox import OutboundStatus, OutboundTask
from orchestrator.store.sqlite import SQLiteStore
from schemas.jobs import JobState
from tests.factories import make_new_job


class CountingStore(SQLiteStore):
    """Counts how often the dispatcher looks for work: once per wake-up."""

    looks = 0

    async def lease_outbound(
        self, *, now: datetime, lease_s: float, limit: int
    ) -> list[OutboundTask]:
        self.looks += 1
        return await super().lease_outbound(now=now, lease_s=lease_s, limit=limit)


async def test_a_subscriber_outage_leaves_the_dispatcher_asleep(tmp_path: Path) -> None:
    clock = FakeClock()
    now = clock.now()
    store = CountingStore(tmp_path / "d.db")
    await store.open()
    calls: list[str] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(500)

    client = httpx.AsyncClient(transport=httpx.MockTransport(down))
    try:
        await store.create_subscription(
            new_subscription("sub_1", "https://hooks.example/x", None, now=now)
        )
        for _ in range(3):  # three jobs, two events each
            job, _ = await store.create_job(make_new_job(now))
            await store.apply_transition(job, Event.CANCEL, JobState.CANCELLED, cause="t", now=now)
        dispatcher = Dispatcher(
            store=store,
            client=client,
            clock=clock,
            schedule=RetrySchedule((600.0,), jitter=0.0),
            rng=random.Random(1),
        )
        stop = asyncio.Event()
        loop = asyncio.create_task(dispatcher.run_forever(stop))
        await asyncio.sleep(1.0)  # the clock stands still: no retry is due
        stop.set()
        await loop
    finally:
        await client.aclose()
        await store.close()
    # Each job's first event was tried once; its second waits behind it.
    assert len(calls) == 3
    # One look that found them, one that found nothing, then asleep until the retry.
    assert store.looks <= 3


async def test_a_subscriber_at_a_forbidden_address_is_dead_at_once(tmp_path: Path) -> None:
    """A subscription stored before its address was refused is not retried for hours:
    the guard will refuse it on every try."""
    clock = FakeClock()
    now = clock.now()
    store = SQLiteStore(tmp_path / "d.db")
    await store.open()
    client = make_guarded_client(AllowList(), timeout=httpx.Timeout(5.0))
    try:
        sub = new_subscription("sub_1", "http://127.0.0.2:9/hook", None, now=now)
        await store.create_subscription(sub)
        job, _ = await store.create_job(make_new_job(now))
        await store.apply_transition(job, Event.CANCEL, JobState.CANCELLED, cause="t", now=now)
        dispatcher = Dispatcher(
            store=store,
            client=client,
            clock=clock,
            schedule=RetrySchedule((5.0, 30.0), jitter=0.0),
            rng=random.Random(1),
        )
        await dispatcher.run_until_idle()
        deliveries = await store.list_outbound(subscription_id="sub_1")
    finally:
        await client.aclose()
        await store.close()
    assert deliveries, "the events were fanned out to the subscription"
    assert {d.status for d in deliveries} == {OutboundStatus.DEAD}
    assert all(d.attempts == 1 for d in deliveries)
