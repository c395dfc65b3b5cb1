"""Store verbs the operator console reads, on both stores: counts of recent jobs for
the overview, and deliveries a page at a time for the inbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.domain.states import Event
from orchestrator.store.protocol import DeliveryStatus, NewDelivery, Store
from schemas.jobs import JobState
from tests.factories import make_new_job
from tests.integration.test_store_contract import _database, _open

CLOCK = FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    impl = await _open(request.param, await _database(request.param, request, tmp_path))
    try:
        yield impl
    finally:
        await impl.close()


async def test_job_counts_since_counts_only_jobs_created_from_then(store: Store) -> None:
    now = CLOCK.now()
    old, _ = await store.create_job(make_new_job(now - timedelta(days=2)))
    await store.create_job(make_new_job(now - timedelta(hours=3), provider="fotor"))
    recent, _ = await store.create_job(make_new_job(now - timedelta(minutes=5)))
    await store.create_job(make_new_job(now - timedelta(minutes=1)))
    await store.apply_transition(recent, Event.CANCEL, JobState.CANCELLED, cause="api", now=now)

    assert await store.job_counts(since=now - timedelta(hours=1)) == {
        ("queued", "upsampler"): 1,
        ("cancelled", "upsampler"): 1,
    }
    assert await store.job_counts(since=now - timedelta(days=1)) == {
        ("queued", "upsampler"): 1,
        ("queued", "fotor"): 1,
        ("cancelled", "upsampler"): 1,
    }
    everything = await store.job_counts()
    assert everything[("queued", "upsampler")] == 2 and old.state is JobState.QUEUED
    assert await store.job_counts(since=now + timedelta(seconds=1)) == {}


async def test_deliveries_come_a_page_at_a_time_newest_first(store: Store) -> None:
    start = CLOCK.now()
    ids = []
    for n in range(7):
        # Two deliveries share each received time: the id breaks the tie.
        at = start + timedelta(seconds=n // 2)
        delivery = NewDelivery(
            id=f"dlv_{n:02d}",
            provider="upsampler",
            claimed_job_id=None,
            received_at=at,
            headers={},
            body=b"{}",
            dedupe_key=f"key-{n}",
        )
        await store.record_delivery(delivery)
        await store.mark_delivery(delivery.id, DeliveryStatus.DEAD, now=at, error="bad body")
        ids.append(delivery.id)

    seen: list[str] = []
    after = None
    while True:
        page = await store.list_deliveries(status=DeliveryStatus.DEAD, limit=3, after=after)
        if not page:
            break
        seen += [d.id for d in page]
        after = page[-1].id
    assert seen == list(reversed(ids))
    assert await store.list_deliveries(after="dlv_unknown") == []


async def test_dead_deliveries_are_counted_since_a_time(store: Store) -> None:
    start = CLOCK.now()
    for n, status in enumerate(["dead", "dead", "applied", "dead"]):
        at = start + timedelta(minutes=n)
        await store.record_delivery(
            NewDelivery(
                id=f"dlv_c{n}",
                provider="upsampler",
                claimed_job_id=None,
                received_at=at,
                headers={},
                body=b"{}",
                dedupe_key=f"count-{n}",
            )
        )
        await store.mark_delivery(f"dlv_c{n}", DeliveryStatus(status), now=at)

    assert await store.count_deliveries(DeliveryStatus.DEAD) == 3
    later = start + timedelta(minutes=1)
    assert await store.count_deliveries(DeliveryStatus.DEAD, since=later) == 2
    assert await store.count_deliveries(since=start + timedelta(minutes=2)) == 2
    assert await store.count_deliveries() == 4
    assert await store.count_deliveries(DeliveryStatus.DEAD, provider="upsampler") == 3
    assert await store.count_deliveries(DeliveryStatus.DEAD, provider="fotor") == 0


async def test_a_text_shorter_than_a_trigram_matches_ids_only(store: Store) -> None:
    now = CLOCK.now()
    first, _ = await store.create_job(make_new_job(now, metadata={"order": 42, "who": "Ann"}))
    second, _ = await store.create_job(
        make_new_job(now + timedelta(milliseconds=1), metadata={"order": 7, "note": "x!y"})
    )

    async def found(text: str) -> list[str]:
        return [j.id for j in await store.list_jobs(text=text, limit=10)]

    # One or two characters would read every job's metadata: ids only.
    assert await found("42") == []
    assert await found("!") == []
    assert await found("7") == []
    # From three characters on, the metadata too, in any case.
    assert await found("Ann") == [first.id]
    assert await found("aNN") == [first.id]
    assert await found("x!y") == [second.id]
    assert await found("zqz") == []
