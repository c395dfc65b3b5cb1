"""The Store contract: every implementation must pass these."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.clock import FakeClock
from orchestrator.states import Event
from orchestrator.store.migrate import SchemaTooNew, load_migrations
from orchestrator.store.protocol import Changes, DeliveryStatus, NewDelivery, Store
from orchestrator.store.sqlite import SQLiteStore
from schemas.errors import IdempotencyConflict
from schemas.jobs import Failure, JobState, ResultInfo
from tests.factories import make_new_job

CLOCK = FakeClock()


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    impl = SQLiteStore(tmp_path / "contract.db")
    await impl.open()
    try:
        yield impl
    finally:
        await impl.close()


async def test_create_and_read_back(store: Store) -> None:
    job, created = await store.create_job(make_new_job(CLOCK.now(), metadata={"a": [1, 2]}))
    assert created
    assert job.state is JobState.QUEUED and job.version == 1
    again = await store.get_job(job.id)
    assert again == job
    assert again is not None and again.metadata == {"a": [1, 2]}


async def test_idempotency_key_returns_the_same_job(store: Store) -> None:
    first, created = await store.create_job(make_new_job(CLOCK.now(), idempotency_key="k1"))
    second, created_again = await store.create_job(make_new_job(CLOCK.now(), idempotency_key="k1"))
    assert created and not created_again
    assert second.id == first.id
    with pytest.raises(IdempotencyConflict):
        await store.create_job(make_new_job(CLOCK.now(), idempotency_key="k1", scale=4.0))


async def test_compare_and_set_lets_one_writer_win(store: Store) -> None:
    job, _ = await store.create_job(make_new_job(CLOCK.now()))
    started = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert started is not None
    accepted = await store.apply_transition(
        started,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="t",
        now=CLOCK.now(),
        changes=Changes(provider_job_id="p-1"),
    )
    assert accepted is not None
    results = await asyncio.gather(
        store.apply_transition(
            accepted,
            Event.PROVIDER_SUCCEEDED,
            JobState.FETCHING,
            cause="callback",
            now=CLOCK.now(),
            changes=Changes(result_url="https://r/1.png"),
        ),
        store.apply_transition(
            accepted,
            Event.PROVIDER_FAILED,
            JobState.FAILED,
            cause="poll",
            now=CLOCK.now(),
            changes=Changes(failure=Failure("provider_failed", "x")),
        ),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    final = await store.get_job(job.id)
    assert final is not None and final.state is winners[0].state
    history = await store.history(job.id)
    assert [h.to_state for h in history] == [
        JobState.QUEUED,
        JobState.SUBMITTING,
        JobState.SUBMITTED,
        winners[0].state,
    ]


async def test_find_by_provider_job_id(store: Store) -> None:
    job, _ = await store.create_job(make_new_job(CLOCK.now()))
    started = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert started is not None
    await store.apply_transition(
        started,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="t",
        now=CLOCK.now(),
        changes=Changes(provider_job_id="abc"),
    )
    found = await store.find_job("upsampler", "abc")
    assert found is not None and found.id == job.id
    assert await store.find_job("upsampler", "nope") is None
    assert await store.find_job("fotor", "abc") is None


async def test_result_and_failure_round_trip(store: Store) -> None:
    job, _ = await store.create_job(make_new_job(CLOCK.now()))
    result = ResultInfo("k.png", "image/png", 10, "ab" * 32, 4, 3, "PNG")
    updated = await store.update_job(
        job, Changes(result=result, failure=Failure("deadline", "late")), now=CLOCK.now()
    )
    assert updated is not None
    assert updated.result == result
    assert updated.failure == Failure("deadline", "late")


async def test_due_jobs_are_leased_once(store: Store) -> None:
    now = CLOCK.now()
    ids = [
        (await store.create_job(make_new_job(now - timedelta(seconds=5 - i))))[0].id
        for i in range(3)
    ]
    first = await store.lease_due(now=now, lease_s=60, limit=10)
    assert sorted(j.id for j in first) == sorted(ids)
    assert await store.lease_due(now=now, lease_s=60, limit=10) == []
    # When the lease runs out, the job is due again.
    later = await store.lease_due(now=now + timedelta(seconds=61), lease_s=60, limit=10)
    assert len(later) == 3


async def test_next_due_at_and_not_due(store: Store) -> None:
    now = CLOCK.now()
    job, _ = await store.create_job(make_new_job(now))
    await store.update_job(job, Changes(next_check_at=now + timedelta(seconds=30)), now=now)
    assert await store.lease_due(now=now, lease_s=60, limit=10) == []
    due = await store.next_due_at()
    assert due is not None and abs((due - now).total_seconds() - 30) < 0.01


async def test_terminal_jobs_are_never_due(store: Store) -> None:
    now = CLOCK.now()
    job, _ = await store.create_job(make_new_job(now))
    await store.apply_transition(
        job,
        Event.CANCEL,
        JobState.CANCELLED,
        cause="t",
        now=now,
        changes=Changes(next_check_at=now),
    )
    assert await store.lease_due(now=now + timedelta(days=1), lease_s=60, limit=10) == []
    assert await store.next_due_at() is None


async def test_deliveries_and_duplicates(store: Store) -> None:
    now = CLOCK.now()

    def new(i: str, key: str) -> NewDelivery:
        return NewDelivery(
            id=i,
            provider="upsampler",
            claimed_job_id="job_x",
            received_at=now,
            headers={"content-type": "application/json"},
            body=b'{"a":1}',
            dedupe_key=key,
        )

    first = await store.record_delivery(new("d1", "k"))
    second = await store.record_delivery(new("d2", "k"))
    assert first.status is DeliveryStatus.PENDING
    assert second.status is DeliveryStatus.DUPLICATE
    assert [d.id for d in await store.pending_deliveries(limit=10)] == ["d1"]
    await store.mark_delivery("d1", DeliveryStatus.PENDING, now=now, provider_job_id="p9")
    assert await store.pending_deliveries(limit=10) == []
    waiting = await store.deliveries_waiting_for("job_x", "upsampler", None)
    assert [d.id for d in waiting] == ["d1"]
    by_pjid = await store.deliveries_waiting_for("job_other", "upsampler", "p9")
    assert [d.id for d in by_pjid] == ["d1"]
    await store.mark_delivery("d1", DeliveryStatus.APPLIED, now=now, job_id="job_x")
    got = await store.get_delivery("d1")
    assert got is not None and got.status is DeliveryStatus.APPLIED and got.body == b'{"a":1}'
    assert await store.count_deliveries(DeliveryStatus.DUPLICATE) == 1


async def test_list_jobs_filters_and_pages(store: Store) -> None:
    now = CLOCK.now()
    made = [
        (await store.create_job(make_new_job(now + timedelta(milliseconds=i))))[0] for i in range(5)
    ]
    page = await store.list_jobs(limit=2)
    assert [j.id for j in page] == [made[4].id, made[3].id]
    rest = await store.list_jobs(limit=10, after=page[-1].id)
    assert [j.id for j in rest] == [made[2].id, made[1].id, made[0].id]
    assert await store.list_jobs(state=JobState.FAILED) == []


async def test_migrations_build_an_empty_database(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    await store.open()
    try:
        assert await store.schema_version() == len(load_migrations("sqlite"))
    finally:
        await store.close()
    # Opening again applies nothing new.
    store = SQLiteStore(tmp_path / "m.db")
    await store.open()
    await store.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.db")
    await store.open()
    await store.db.execute("INSERT INTO schema_version (version) VALUES (999)")
    await store.close()
    with pytest.raises(SchemaTooNew):
        await SQLiteStore(tmp_path / "n.db").open()


async def test_outbox_fans_out_in_the_transition_and_orders_per_job(store: Store) -> None:
    from orchestrator.outbound.subscriptions import new_subscription

    now = CLOCK.now()
    sub = new_subscription("sub_1", "https://h.example/x", ["job.queued", "job.cancelled"], now=now)
    await store.create_subscription(sub)
    job, _ = await store.create_job(make_new_job(now))
    await store.apply_transition(job, Event.CANCEL, JobState.CANCELLED, cause="t", now=now)
    events = await store.list_events()
    assert [e.type for e in events] == ["job.queued", "job.cancelled"]
    first = await store.lease_outbound(now=now, lease_s=60, limit=10)
    # The second event of the job waits until the first is settled.
    assert [t.event.type for t in first] == ["job.queued"]
    assert await store.lease_outbound(now=now, lease_s=60, limit=10) == []
    await store.clear_leases()  # a restarted single process takes its leases back
    again = await store.lease_outbound(now=now, lease_s=60, limit=10)
    assert [t.id for t in again] == [first[0].id]
    await store.record_attempt(
        first[0].id,
        "sub_1",
        now=now,
        ok=True,
        status_code=200,
        error=None,
        duration_ms=1.0,
        retry_at=None,
        disable_after=5,
    )
    second = await store.lease_outbound(now=now, lease_s=60, limit=10)
    assert [t.event.type for t in second] == ["job.cancelled"]
