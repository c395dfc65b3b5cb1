"""The Store contract: every implementation must pass these."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.domain.states import Event
from orchestrator.store.migrate import SchemaNotReady, SchemaTooNew, load_migrations
from orchestrator.store.outbox import OutboundTask
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.protocol import (
    CallbackMatch,
    Changes,
    DeliveryMark,
    DeliveryStatus,
    NewDelivery,
    Store,
)
from orchestrator.store.sqlite import SQLiteStore
from schemas.errors import IdempotencyConflict, ProviderJobIdTaken, StoreUnavailable
from schemas.jobs import Failure, Job, JobState, Operation, ResultInfo
from tests.factories import make_new_job, open_sqlite
from tests.postgres_db import create_schema, migrated_and_empty

CLOCK = FakeClock()


async def _database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where this test's stores live: a file, or the session's PostgreSQL database emptied."""
    if kind == "sqlite":
        return str(tmp_path / "contract.db")
    # The session fixture is synchronous: fine to pull in lazily from a running loop.
    return await migrated_and_empty(request.getfixturevalue("postgres_database"))


async def _open(kind: str, where: str) -> Store:
    impl: SQLiteStore | PostgresStore
    impl = SQLiteStore(Path(where)) if kind == "sqlite" else PostgresStore(where)
    await impl.open()
    return impl


def _delivery(delivery_id: str, key: str, **fields: Any) -> NewDelivery:
    """A new delivery for ``upsampler`` (claimed by ``job_x`` unless told otherwise)."""
    defaults: dict[str, Any] = {
        "provider": "upsampler",
        "claimed_job_id": "job_x",
        "received_at": CLOCK.now(),
        "headers": {"content-type": "application/json"},
        "body": b"{}",
    }
    return NewDelivery(id=delivery_id, dedupe_key=key, **{**defaults, **fields})


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    impl = await _open(request.param, await _database(request.param, request, tmp_path))
    try:
        yield impl
    finally:
        await impl.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def twin_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two processes would have."""
    where = await _database(request.param, request, tmp_path)
    first = await _open(request.param, where)
    try:
        second = await _open(request.param, where)
        try:
            yield first, second
        finally:
            await second.close()
    finally:
        await first.close()


@pytest.fixture
async def pg_pair(postgres_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two PostgreSQL stores (two pools) on one database: two worker processes."""
    first = PostgresStore(postgres_dsn)
    second = PostgresStore(postgres_dsn)
    await first.open()
    try:
        await second.open()
        try:
            yield first, second
        finally:
            await second.close()
    finally:
        await first.close()


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


async def _submitting(store: Store) -> Job:
    job, _ = await store.create_job(make_new_job(CLOCK.now()))
    started = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert started is not None
    return started


async def test_a_provider_job_id_held_by_another_job_is_refused_and_nothing_written(
    store: Store,
) -> None:
    first, second = await _submitting(store), await _submitting(store)
    accepted = Changes(provider_job_id="same")
    done = await store.apply_transition(
        first,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="t",
        now=CLOCK.now(),
        changes=accepted,
    )
    assert done is not None
    with pytest.raises(ProviderJobIdTaken):
        await store.apply_transition(
            second,
            Event.SUBMIT_ACCEPTED,
            JobState.SUBMITTED,
            cause="t",
            now=CLOCK.now(),
            changes=accepted,
        )
    assert await store.get_job(second.id) == second
    assert [h.to_state for h in await store.history(second.id)] == [
        JobState.QUEUED,
        JobState.SUBMITTING,
    ]
    # The job is not wedged: the next transition of the same version goes through.
    moved = await store.apply_transition(
        second, Event.SUBMIT_UNCERTAIN, JobState.UNCERTAIN, cause="t", now=CLOCK.now()
    )
    assert moved is not None and moved.state is JobState.UNCERTAIN


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
    cancelled = await store.get_job(job.id)
    # The state machine's rule, in every store: no due work, no next check.
    assert cancelled is not None and cancelled.next_check_at is None


async def test_an_uncertain_job_has_no_next_check(store: Store) -> None:
    now = CLOCK.now()
    job, _ = await store.create_job(make_new_job(now))
    started = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="submit", now=now
    )
    assert started is not None
    uncertain = await store.apply_transition(
        started, Event.SUBMIT_UNCERTAIN, JobState.UNCERTAIN, cause="submit", now=now
    )
    assert uncertain is not None and uncertain.next_check_at is None
    assert await store.next_due_at() is None


async def test_deliveries_and_duplicates(store: Store) -> None:
    now = CLOCK.now()

    def new(i: str, key: str) -> NewDelivery:
        return _delivery(i, key, received_at=now, body=b'{"a":1}')

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


async def test_a_delivery_left_waiting_is_stranded_once_its_job_has_its_answer(
    store: Store,
) -> None:
    """A callback waited for its job's submit answer; the process that stored the
    answer died before applying it. The inbox finds it again, and only then."""
    now = CLOCK.now()
    job, _ = await store.create_job(make_new_job(now))
    await store.record_delivery(_delivery("d1", "k1", claimed_job_id=None))
    await store.mark_delivery("d1", DeliveryStatus.PENDING, now=now, provider_job_id="p1")
    never = _delivery("d2", "k2", claimed_job_id=None)
    await store.record_delivery(never)
    await store.mark_delivery("d2", DeliveryStatus.PENDING, now=now, provider_job_id="other")
    submitting = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="submit", now=now
    )
    assert submitting is not None
    assert await store.stranded_waiting(limit=10) == []
    submitted = await store.apply_transition(
        submitting,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="submit",
        changes=Changes(provider_job_id="p1"),
        now=now,
    )
    assert submitted is not None
    assert [d.id for d in await store.stranded_waiting(limit=10)] == ["d1"]
    await store.mark_delivery("d1", DeliveryStatus.APPLIED, now=now, job_id=job.id)
    assert await store.stranded_waiting(limit=10) == []


async def test_a_callback_matches_its_job_or_a_submit_in_flight_in_one_read(
    store: Store,
) -> None:
    nothing = await store.match_callback("fotor", "t-1")
    assert nothing == CallbackMatch(None, False)
    other = await _submitting(store)  # an upsampler submit: not fotor's
    assert await store.match_callback("fotor", "t-1") == CallbackMatch(None, False)
    job, _ = await store.create_job(make_new_job(CLOCK.now(), provider="fotor"))
    started = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert started is not None
    assert await store.match_callback("fotor", "t-1") == CallbackMatch(None, True)
    accepted = await store.apply_transition(
        started,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="t",
        now=CLOCK.now(),
        changes=Changes(provider_job_id="t-1"),
    )
    assert await store.match_callback("fotor", "t-1") == CallbackMatch(accepted, False)
    assert await store.match_callback("fotor", "t-2") == CallbackMatch(None, False)
    assert await store.match_callback("upsampler", "t-1") == CallbackMatch(None, True)
    assert other.state is JobState.SUBMITTING


async def test_a_transition_and_its_deliverys_mark_commit_together(store: Store) -> None:
    job = await _submitting(store)
    await store.record_delivery(_delivery("d1", "k1", claimed_job_id=job.id))
    mark = DeliveryMark("d1", DeliveryStatus.APPLIED, CLOCK.now(), job.id, "p-1")
    accepted = Changes(provider_job_id="p-1")
    stale = replace(job, version=job.version - 1)
    lost = await store.apply_transition(
        stale,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="t",
        now=CLOCK.now(),
        changes=accepted,
        mark=mark,
    )
    assert lost is None
    waiting = await store.get_delivery("d1")
    assert waiting is not None and waiting.status is DeliveryStatus.PENDING  # no mark either
    assert [d.id for d in await store.pending_deliveries(limit=10)] == ["d1"]
    done = await store.apply_transition(
        job,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="t",
        now=CLOCK.now(),
        changes=accepted,
        mark=mark,
    )
    assert done is not None and done.state is JobState.SUBMITTED
    marked = await store.get_delivery("d1")
    assert marked is not None and marked.status is DeliveryStatus.APPLIED
    assert (marked.job_id, marked.provider_job_id) == (job.id, "p-1")
    assert await store.pending_deliveries(limit=10) == []


async def test_a_schedule_change_and_its_deliverys_mark_commit_together(store: Store) -> None:
    job, _ = await store.create_job(make_new_job(CLOCK.now()))
    await store.record_delivery(_delivery("d2", "k2", claimed_job_id=job.id))
    mark = DeliveryMark("d2", DeliveryStatus.APPLIED, CLOCK.now(), job.id)
    soon = Changes(next_check_at=CLOCK.now())
    assert await store.update_job(replace(job, version=0), soon, now=CLOCK.now(), mark=mark) is None
    waiting = await store.get_delivery("d2")
    assert waiting is not None and waiting.status is DeliveryStatus.PENDING
    updated = await store.update_job(job, soon, now=CLOCK.now(), mark=mark)
    assert updated is not None and updated.version == job.version + 1
    marked = await store.get_delivery("d2")
    assert marked is not None and marked.status is DeliveryStatus.APPLIED


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


async def test_a_replace_job_keeps_its_operation_prompt_mask_and_input_size(
    store: Store,
) -> None:
    new = make_new_job(
        CLOCK.now(),
        input_url=None,
        input_key="job_1.png",
        operation=Operation.REPLACE,
        prompt="Butterfly",
        mask_key="job_1_mask.png",
        input_width=640,
        input_height=480,
    )
    job, created = await store.create_job(new)
    assert created
    read = await store.get_job(job.id)
    assert read == job
    assert read is not None
    assert (read.operation, read.prompt, read.mask_key, read.mask_url) == (
        Operation.REPLACE,
        "Butterfly",
        "job_1_mask.png",
        None,
    )
    assert (read.input_width, read.input_height) == (640, 480)


async def test_a_job_made_without_an_operation_is_an_upscale(store: Store) -> None:
    job, _ = await store.create_job(make_new_job(CLOCK.now()))
    read = await store.get_job(job.id)
    assert read is not None and read.operation is Operation.UPSCALE
    assert (read.prompt, read.mask_key, read.mask_url, read.input_width) == (None,) * 4


async def test_list_jobs_filters_by_operation(store: Store) -> None:
    now = CLOCK.now()
    upscale, _ = await store.create_job(make_new_job(now))
    replacing, _ = await store.create_job(
        make_new_job(
            now + timedelta(milliseconds=1),
            operation=Operation.REPLACE,
            prompt="Cat",
            mask_url="https://example.test/mask.png",
        )
    )
    assert [j.id for j in await store.list_jobs(operation=Operation.REPLACE)] == [replacing.id]
    assert [j.id for j in await store.list_jobs(operation=Operation.UPSCALE)] == [upscale.id]
    assert len(await store.list_jobs()) == 2


async def test_an_idempotency_key_with_another_prompt_is_a_conflict(store: Store) -> None:
    first = make_new_job(
        CLOCK.now(), idempotency_key="k-replace", operation=Operation.REPLACE, prompt="Cat"
    )
    await store.create_job(first)
    _, created = await store.create_job(replace(first, id="job_other"))
    assert not created
    with pytest.raises(IdempotencyConflict):
        await store.create_job(replace(first, id="job_third", prompt="Dog"))


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


# concurrency and several processes ----------------------------------------------


async def test_concurrent_creates_with_one_idempotency_key_make_one_job(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_job(make_new_job(CLOCK.now(), idempotency_key="race")) for _ in range(6))
    )
    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert len(await store.list_jobs(limit=100)) == 1


async def test_a_committed_event_wakes_this_process(store: Store) -> None:
    woken = asyncio.create_task(store.events_written.wait(5.0))
    await asyncio.sleep(0)
    await store.create_job(make_new_job(CLOCK.now()))
    assert await woken


async def test_redelivering_an_event_or_enabling_a_subscription_wakes_the_dispatcher(
    store: Store,
) -> None:
    from orchestrator.outbound.subscriptions import new_subscription

    now = CLOCK.now()
    await store.create_subscription(new_subscription("sub_1", "https://h.example/x", None, now=now))
    await store.create_job(make_new_job(now))
    (event,) = await store.list_events()
    woken = asyncio.create_task(store.events_written.wait(5.0))
    await asyncio.sleep(0)
    assert await store.redeliver(event.seq, now=now) == 1
    assert await woken
    woken = asyncio.create_task(store.events_written.wait(5.0))
    await asyncio.sleep(0)
    await store.enable_subscription("sub_1")
    assert await woken


async def test_appended_callbacks_are_pending_at_once_and_duplicates_once_filed(
    store: Store,
) -> None:
    now = CLOCK.now()
    await store.record_delivery(_delivery("d0", "k-old", received_at=now))
    for delivery_id, key in (("d1", "k-a"), ("d2", "k-b"), ("d3", "k-a"), ("d4", "k-old")):
        await store.append_received(_delivery(delivery_id, key, received_at=now))
    # Acknowledged means committed: readable and counted before any filing.
    got = await store.get_delivery("d3")
    assert got is not None and got.status is DeliveryStatus.PENDING
    assert await store.count_deliveries(DeliveryStatus.PENDING) == 5
    # The console's filtered counts see them too, by provider and by time.
    assert await store.count_deliveries(provider="upsampler") == 5
    assert await store.count_deliveries(provider="fotor") == 0
    assert await store.count_deliveries(since=now + timedelta(seconds=1)) == 0
    assert await store.count_deliveries(DeliveryStatus.DEAD) == 0
    assert [d.id for d in await store.pending_deliveries(limit=10)] == ["d0"]

    filed = await store.admit_received(limit=3)
    assert [(d.id, d.status) for d in filed] == [
        ("d1", DeliveryStatus.PENDING),
        ("d2", DeliveryStatus.PENDING),
        ("d3", DeliveryStatus.DUPLICATE),
    ]
    rest = await store.admit_received(limit=10)
    assert [(d.id, d.status) for d in rest] == [("d4", DeliveryStatus.DUPLICATE)]
    assert await store.admit_received(limit=10) == []
    assert [d.id for d in await store.pending_deliveries(limit=10)] == ["d0", "d1", "d2"]
    assert await store.count_deliveries() == 5
    assert await store.count_deliveries(DeliveryStatus.DUPLICATE) == 2
    four = await store.get_delivery("d4")
    assert four is not None and four.status is DeliveryStatus.DUPLICATE


async def test_an_acknowledged_callback_is_never_not_found_while_it_is_filed(
    store: Store,
) -> None:
    now = CLOCK.now()
    ids = [f"dlv_f{i:04d}" for i in range(120)]
    for delivery_id in ids:
        await store.append_received(_delivery(delivery_id, f"kf-{delivery_id}", received_at=now))
    missing: list[str] = []

    async def file_all() -> None:
        while await store.admit_received(limit=3):
            await asyncio.sleep(0)

    async def read_all() -> None:
        for _ in range(3):
            for delivery_id in ids:
                if await store.get_delivery(delivery_id) is None:
                    missing.append(delivery_id)

    await asyncio.gather(file_all(), read_all(), read_all())
    assert missing == []


async def test_a_burst_of_appended_callbacks_is_all_committed(store: Store) -> None:
    now = CLOCK.now()
    await asyncio.gather(
        *(
            store.append_received(_delivery(f"dlv_b{i:04d}", f"kb-{i % 50}", received_at=now))
            for i in range(300)
        )
    )
    assert await store.count_deliveries() == 300
    filed = await store.admit_received(limit=1000)
    assert len(filed) == 300
    assert sum(d.status is DeliveryStatus.PENDING for d in filed) == 50


async def test_deliveries_received_at_one_instant_come_in_id_order(store: Store) -> None:
    for delivery_id in ("d2", "d3", "d1"):
        await store.record_delivery(_delivery(delivery_id, f"key-{delivery_id}"))
    assert [d.id for d in await store.pending_deliveries(limit=10)] == ["d1", "d2", "d3"]
    waiting = await store.deliveries_waiting_for("job_x", "upsampler", None)
    assert [d.id for d in waiting] == ["d1", "d2", "d3"]


async def test_events_are_numbered_in_commit_order(store: Store) -> None:
    """A reader paging by seq while 4 writers transition jobs sees every event once."""
    writers_done = asyncio.Event()

    async def writer(n: int) -> None:
        for _ in range(n):
            now = CLOCK.now()
            job, _ = await store.create_job(make_new_job(now))
            started = await store.apply_transition(
                job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=now
            )
            assert started is not None
            accepted = await store.apply_transition(
                started,
                Event.SUBMIT_ACCEPTED,
                JobState.SUBMITTED,
                cause="t",
                now=now,
                changes=Changes(provider_job_id=f"p-{job.id}"),
            )
            assert accepted is not None
            assert await store.apply_transition(
                accepted, Event.CANCEL, JobState.CANCELLED, cause="t", now=now
            )

    seen: list[int] = []

    async def reader() -> None:
        cursor = 0
        while True:
            finished = writers_done.is_set()
            page = await store.list_events(after=cursor, limit=50)
            seen.extend(e.seq for e in page)
            if page:
                cursor = page[-1].seq
            elif finished:
                return
            else:
                await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(25) for _ in range(4)))
    writers_done.set()
    await reading
    everything = [e.seq for e in await store.list_events(limit=10_000)]
    assert len(everything) == 4 * 25 * 3  # queued, submitted, cancelled
    assert seen == everything  # each once, in order, none skipped


async def test_budget_windows_cooldowns_and_spacing(store: Store) -> None:
    t0 = CLOCK.now()

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    windows = [(2, 10.0), (0, 60.0)]  # 2 per 10 s; the second window is unlimited
    assert await store.take_budget("upsampler", "submit", windows, now=at(0)) == 0.0
    assert await store.take_budget("upsampler", "submit", windows, now=at(1)) == 0.0
    assert await store.take_budget("upsampler", "submit", windows, now=at(2)) == pytest.approx(8)
    # A refusal takes nothing: the first call ages out at t0 + 10.
    assert await store.take_budget("upsampler", "submit", windows, now=at(10.5)) == 0.0
    assert await store.take_budget("upsampler", "submit", windows, now=at(10.6)) == pytest.approx(
        0.4
    )
    # Budgets are per provider and kind.
    assert await store.take_budget("upsampler", "status", windows, now=at(10.6)) == 0.0
    assert await store.take_budget("fotor", "submit", windows, now=at(10.6)) == 0.0
    # A cooldown (Retry-After) holds every call; a shorter one does not cut it.
    await store.cool_down_budget("fotor", "submit", until=at(40))
    await store.cool_down_budget("fotor", "submit", until=at(20))
    assert await store.take_budget("fotor", "submit", windows, now=at(30)) == pytest.approx(10)
    assert await store.take_budget("fotor", "submit", windows, now=at(40)) == 0.0
    # Unlimited windows always grant; cooldown_s spaces calls out.
    for i in range(20):
        assert await store.take_budget("local", "submit", [(0, 60.0)], now=at(i / 100)) == 0.0
    assert await store.take_budget("photio", "status", [], now=at(0), cooldown_s=3) == 0.0
    assert await store.take_budget(
        "photio", "status", [], now=at(1), cooldown_s=3
    ) == pytest.approx(2)
    assert await store.take_budget("photio", "status", [], now=at(3), cooldown_s=3) == 0.0


async def test_a_longer_window_counts_calls_the_shorter_one_let_through(store: Store) -> None:
    t0 = CLOCK.now()
    windows = [(1, 5.0), (3, 100.0)]  # 1 per 5 s, 3 per 100 s
    for second in (0, 10, 20):
        assert (
            await store.take_budget("artnex", "submit", windows, now=t0 + timedelta(seconds=second))
            == 0.0
        )
    # The short window is free again; the long one is full until the first call ages out.
    wait = await store.take_budget("artnex", "submit", windows, now=t0 + timedelta(seconds=30))
    assert wait == pytest.approx(70)
    assert (
        await store.take_budget("artnex", "submit", windows, now=t0 + timedelta(seconds=100)) == 0.0
    )


async def test_budget_is_shared_by_two_stores(twin_stores: tuple[Store, Store]) -> None:
    """20 concurrent takers in two processes, 5 per minute: exactly 5 are granted."""
    first, second = twin_stores
    now = CLOCK.now()
    waits = await asyncio.gather(
        *(
            (first if i % 2 else second).take_budget("upsampler", "submit", [(5, 60.0)], now=now)
            for i in range(20)
        )
    )
    assert sorted(waits)[:6] == [0.0] * 5 + [pytest.approx(60)]
    later = now + timedelta(seconds=60.5)
    assert await second.take_budget("upsampler", "submit", [(5, 60.0)], now=later) == 0.0


async def test_two_workers_never_lease_the_same_job(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pg_pair
    now = CLOCK.now()
    for i in range(200):
        await first.create_job(make_new_job(now - timedelta(seconds=300 - i)))

    async def leaser(store: PostgresStore) -> list[str]:
        got: list[str] = []
        while batch := await store.lease_due(now=now, lease_s=60, limit=7):
            got.extend(j.id for j in batch)
        return got

    a, b, c, d = await asyncio.gather(leaser(first), leaser(second), leaser(first), leaser(second))
    leased = a + b + c + d
    assert len(leased) == 200
    assert len(set(leased)) == 200
    assert a and b  # both processes got work


async def test_outbound_order_holds_across_two_workers(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    from orchestrator.outbound.subscriptions import new_subscription

    first, second = pg_pair
    now = CLOCK.now()
    await first.create_subscription(
        new_subscription("sub_1", "https://h.example/x", ["job.queued", "job.cancelled"], now=now)
    )
    jobs = []
    for _ in range(20):
        job, _ = await first.create_job(make_new_job(now))
        await second.apply_transition(job, Event.CANCEL, JobState.CANCELLED, cause="t", now=now)
        jobs.append(job.id)

    async def leaser(store: PostgresStore, at: datetime) -> list[OutboundTask]:
        got: list[OutboundTask] = []
        while batch := await store.lease_outbound(now=at, lease_s=60, limit=3):
            got.extend(batch)
        return got

    async def both(at: datetime) -> list[OutboundTask]:
        runs = await asyncio.gather(*(leaser(s, at) for s in (first, second, first, second)))
        tasks = [t for run in runs for t in run]
        assert len({t.id for t in tasks}) == len(tasks)  # never one delivery twice
        return tasks

    # While a job's first event is held by either worker, nobody gets its second.
    leased = await both(now)
    assert sorted(t.event.job_id for t in leased) == sorted(jobs)
    assert {t.event.type for t in leased} == {"job.queued"}
    assert await both(now) == []
    # Half of the first deliveries are settled: their jobs' second events are next.
    settled = leased[:10]
    for task in settled:
        await first.record_attempt(
            task.id,
            "sub_1",
            now=now,
            ok=True,
            status_code=200,
            error=None,
            duration_ms=1.0,
            retry_at=None,
            disable_after=5,
        )
    second_round = await both(now)
    assert {t.event.type for t in second_round} == {"job.cancelled"}
    assert sorted(t.event.job_id for t in second_round) == sorted(t.event.job_id for t in settled)
    # Leases run out: the unsettled first events go out again, still before the second.
    retaken = await both(now + timedelta(seconds=61))
    by_type = sorted((t.event.type, t.event.job_id) for t in retaken)
    assert by_type == sorted(
        [("job.queued", t.event.job_id) for t in leased[10:]]
        + [("job.cancelled", t.event.job_id) for t in settled]
    )


async def test_a_redelivery_waits_for_the_jobs_delivery_in_flight(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    from orchestrator.outbound.subscriptions import new_subscription

    first, second = pg_pair
    now = CLOCK.now()
    await first.create_subscription(new_subscription("sub_1", "https://h.example/x", None, now=now))
    job, _ = await first.create_job(make_new_job(now))
    await first.apply_transition(job, Event.CANCEL, JobState.CANCELLED, cause="t", now=now)

    async def deliver(task: OutboundTask) -> None:
        await first.record_attempt(
            task.id,
            "sub_1",
            now=now,
            ok=True,
            status_code=200,
            error=None,
            duration_ms=1.0,
            retry_at=None,
            disable_after=5,
        )

    (queued,) = await first.lease_outbound(now=now, lease_s=60, limit=10)
    await deliver(queued)
    (cancelled,) = await first.lease_outbound(now=now, lease_s=60, limit=10)
    assert cancelled.event.type == "job.cancelled"
    # An operator replays the first event while the second is being delivered.
    assert await second.redeliver(queued.event.seq, now=now) == 1
    assert await second.lease_outbound(now=now, lease_s=60, limit=10) == []
    await deliver(cancelled)
    (replayed,) = await second.lease_outbound(now=now, lease_s=60, limit=10)
    assert replayed.event.seq == queued.event.seq


async def test_events_committed_by_another_process_wake_followers(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    writer, follower = pg_pair
    woken = asyncio.create_task(follower.events_written.wait(5.0))
    await asyncio.sleep(0)
    await writer.create_job(make_new_job(CLOCK.now()))
    assert await woken
    assert [e.type for e in await follower.list_events()] == ["job.queued"]


async def test_postgres_migrate_is_idempotent_and_open_checks_the_version(
    postgres_database: str,
) -> None:
    dsn = await create_schema(postgres_database)
    wanted = len(load_migrations("postgres"))
    with pytest.raises(SchemaNotReady, match="upscale db migrate"):
        await PostgresStore(dsn).open()
    # Two processes migrating at once: one applies, the other finds nothing to do.
    assert await asyncio.gather(PostgresStore(dsn).migrate(), PostgresStore(dsn).migrate()) == [
        wanted,
        wanted,
    ]
    assert await PostgresStore(dsn).migrate() == wanted
    store = PostgresStore(dsn)
    await store.open()
    try:
        assert await store.schema_version() == wanted
        async with store.pool.acquire() as conn:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version")]
            assert sorted(versions) == list(range(1, wanted + 1))
            await conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    finally:
        await store.close()
    with pytest.raises(SchemaTooNew):
        await PostgresStore(dsn).open()
    with pytest.raises(SchemaTooNew):
        await PostgresStore(dsn).migrate()


async def test_postgres_out_of_reach_is_store_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/upscale")
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.migrate()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.get_job("job_x")


async def test_the_event_listener_comes_back_after_its_connection_drops(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    writer, follower = pg_pair
    woken = asyncio.create_task(follower.events_written.wait(10.0))
    await asyncio.sleep(0)
    async with writer.pool.acquire() as conn:
        killed = await conn.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
    assert killed == 2  # both stores' listeners
    assert await woken  # reconnected: events may have been missed, so look
    for _ in range(100):  # until it listens again
        woken = asyncio.create_task(follower.events_written.wait(0.1))
        await asyncio.sleep(0)
        await writer.create_job(make_new_job(CLOCK.now()))
        if await woken:
            break
    else:
        pytest.fail("the follower never heard of another process's event again")


async def test_next_due_at_counts_a_held_job_when_its_lease_runs_out(store: Store) -> None:
    now = CLOCK.now()
    job, _ = await store.create_job(make_new_job(now))
    other, _ = await store.create_job(make_new_job(now))
    await store.update_job(other, Changes(next_check_at=now + timedelta(seconds=500)), now=now)
    leased = await store.lease_due(now=now, lease_s=60, limit=10)
    assert [j.id for j in leased] == [job.id]
    due = await store.next_due_at()
    assert due is not None and abs((due - now).total_seconds() - 60) < 0.01
    await store.update_job(leased[0], Changes(next_check_at=now + timedelta(seconds=5)), now=now)
    due = await store.next_due_at()  # the lease is gone with the update: due in 5 s
    assert due is not None and abs((due - now).total_seconds() - 5) < 0.01


async def test_a_burst_of_deliveries_is_stored_whole_with_one_first_per_key(store: Store) -> None:
    """Stored together (the SQLite inbox commits a burst in groups): every delivery is kept,
    and of each set with the same key exactly one is pending, whichever came first."""
    now = CLOCK.now()

    def new(i: int) -> NewDelivery:
        body = b'{"n":%d}' % (i % 100)
        return _delivery(f"dlv_burst{i:04d}", f"key-{i % 100}", received_at=now, body=body)

    await store.record_delivery(new(0))  # key-0 seen before the burst
    stored = await asyncio.gather(*(store.record_delivery(new(i)) for i in range(1, 600)))
    firsts = [d for d in stored if d.status is DeliveryStatus.PENDING]
    assert sorted(d.body for d in firsts) == sorted({b'{"n":%d}' % k for k in range(1, 100)})
    assert await store.count_deliveries() == 600
    assert await store.count_deliveries(DeliveryStatus.PENDING) == 100
    for d in stored:
        got = await store.get_delivery(d.id)
        assert got is not None and got.status is d.status and got.body == d.body


async def test_callbacks_reads_and_creates_at_once_are_all_stored(store: Store) -> None:
    """Six callback posters, two list readers and two job creators at once: nothing is
    refused. (SQLite: a read's snapshot on the writing connection, taken before the inbox
    writer's commit, made the next write fail at once with "database is locked".)"""
    failures: list[BaseException] = []
    created: list[str] = []
    posted = 0
    ends = asyncio.get_running_loop().time() + 2.0

    def running() -> bool:
        return asyncio.get_running_loop().time() < ends

    async def poster(n: int) -> None:
        nonlocal posted
        i = 0
        while running():
            i += 1
            try:
                await store.record_delivery(_delivery(f"dlv_load{n}_{i}", f"load-{n}-{i}"))
                posted += 1
            except StoreUnavailable as exc:
                failures.append(exc)

    async def reader() -> None:
        while running():
            try:
                await store.list_jobs(limit=50)
            except StoreUnavailable as exc:
                failures.append(exc)

    async def creator() -> None:
        while running():
            try:
                job, _ = await store.create_job(make_new_job(CLOCK.now()))
                created.append(job.id)
            except StoreUnavailable as exc:
                failures.append(exc)

    await asyncio.gather(*(poster(n) for n in range(6)), reader(), reader(), creator(), creator())
    assert failures == []
    assert created and posted
    assert await store.count_deliveries() == posted
    assert len(await store.list_jobs(limit=len(created) + 10)) == len(created)


async def test_sqlite_inbox_refuses_every_waiting_delivery_when_it_cannot_commit(
    tmp_path: Path,
) -> None:
    import sqlite3
    from contextlib import closing

    def new(i: int) -> NewDelivery:
        return _delivery(f"dlv_locked{i}", f"k{i}", claimed_job_id=None, headers={})

    async with open_sqlite(tmp_path / "locked.db", busy_timeout_ms=50) as store:
        with closing(sqlite3.connect(tmp_path / "locked.db")) as other:
            other.execute("BEGIN EXCLUSIVE")
            outcomes = await asyncio.gather(
                *(store.append_received(new(i)) for i in range(20)), return_exceptions=True
            )
            other.execute("ROLLBACK")
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        assert await store.count_deliveries() == 0
        await store.append_received(new(0))
        assert await store.count_deliveries(DeliveryStatus.PENDING) == 1


async def test_sqlite_full_durability_stores_a_burst_too(tmp_path: Path) -> None:
    async with open_sqlite(tmp_path / "full.db", synchronous="FULL") as store:
        async with store.db.execute("PRAGMA synchronous") as cur:  # the writing connection
            mode = await cur.fetchone()
        assert mode is not None and mode[0] == 2  # FULL
        await asyncio.gather(
            *(
                store.append_received(
                    _delivery(f"dlv_full{i}", f"k{i}", claimed_job_id=None, headers={})
                )
                for i in range(50)
            )
        )
        assert await store.count_deliveries() == 50
        filed = await store.admit_received(limit=100)
        assert {d.status for d in filed} == {DeliveryStatus.PENDING}
        assert await store.count_deliveries() == 50


async def test_sqlite_inbox_answers_every_caller_even_when_a_batch_breaks(
    tmp_path: Path,
) -> None:
    def new(i: int, headers: dict[str, Any]) -> NewDelivery:
        return _delivery(f"dlv_broken{i}", f"k{i}", claimed_job_id=None, headers=headers)

    async with open_sqlite(tmp_path / "broken.db") as store:
        unencodable = {"x-odd": object()}  # cannot be written: a bug, not a database error
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                store.append_received(new(0, unencodable)),
                *(store.append_received(new(i, {})) for i in range(1, 30)),
                return_exceptions=True,
            ),
            timeout=10,
        )
        assert isinstance(outcomes[0], StoreUnavailable)
        # Every caller got an answer; those answered 200 are stored.
        kept = [o for o in outcomes if not isinstance(o, BaseException)]
        assert await store.count_deliveries() == len(kept)
        await store.append_received(new(99, {}))
        assert await store.count_deliveries() == len(kept) + 1


async def _job_with_two_deliveries(store: Store, now: datetime) -> None:
    from orchestrator.outbound.subscriptions import new_subscription

    await store.create_subscription(new_subscription("sub_1", "https://h.example/x", None, now=now))
    job, _ = await store.create_job(make_new_job(now))
    await store.apply_transition(job, Event.CANCEL, JobState.CANCELLED, cause="t", now=now)


async def test_next_outbound_due_skips_deliveries_waiting_behind_a_failed_one(
    store: Store,
) -> None:
    """A job's second event cannot go out before its first: while the first waits
    for its retry, the next due time is that retry, not now."""
    now = CLOCK.now()
    await _job_with_two_deliveries(store, now)
    (first,) = await store.lease_outbound(now=now, lease_s=60, limit=10)
    retry_at = now + timedelta(seconds=600)
    await store.record_attempt(
        first.id,
        "sub_1",
        now=now,
        ok=False,
        status_code=500,
        error="answered 500",
        duration_ms=1.0,
        retry_at=retry_at,
        disable_after=50,
    )
    assert await store.lease_outbound(now=now, lease_s=60, limit=10) == []
    assert await store.next_outbound_due_at() == retry_at
    # At the retry the first goes out, and only then the second.
    (again,) = await store.lease_outbound(now=retry_at, lease_s=60, limit=10)
    assert again.id == first.id


async def test_next_outbound_due_skips_deliveries_waiting_behind_one_in_flight(
    store: Store,
) -> None:
    now = CLOCK.now()
    await _job_with_two_deliveries(store, now)
    (first,) = await store.lease_outbound(now=now, lease_s=60, limit=10)
    assert first.event.type == "job.queued"
    assert await store.next_outbound_due_at() == now + timedelta(seconds=60)


async def test_sqlite_a_deleted_or_replaced_file_acknowledges_nothing_more(tmp_path: Path) -> None:
    """The connections would go on writing to the unlinked file: every write after it
    would be acknowledged, then lost. The store notices and refuses instead."""
    from contextlib import closing

    from schemas.errors import DatabaseLost

    for how in ("deleted", "replaced"):
        path = tmp_path / f"{how}.db"
        async with open_sqlite(path) as store:
            kept, _ = await store.create_job(make_new_job(CLOCK.now()))
            await store.ping()
            if how == "deleted":
                path.unlink()
            else:
                other = tmp_path / "other.db"
                with closing(sqlite3.connect(other)) as con:
                    con.execute("CREATE TABLE t (x)")
                other.replace(path)
            with pytest.raises(DatabaseLost, match=how):
                await store.ping()
            with pytest.raises(DatabaseLost):
                await store.create_job(make_new_job(CLOCK.now()))
            with pytest.raises(DatabaseLost):
                await store.record_delivery(_delivery(f"dlv_{how}", f"k-{how}"))
            # The callback path's own writer (its own connection, its own thread) too.
            with pytest.raises(DatabaseLost):
                await store.append_received(_delivery(f"dlv_a_{how}", f"ka-{how}"))
            with pytest.raises(DatabaseLost):
                await store.apply_transition(
                    kept, Event.CANCEL, JobState.CANCELLED, cause="api", now=CLOCK.now()
                )


async def test_sqlite_refuses_a_new_empty_database_where_one_existed(tmp_path: Path) -> None:
    from orchestrator.store.sqlite_file import DatabaseMarker
    from schemas.errors import DatabaseLost

    data = tmp_path / "data"
    path = data / "upscale.db"

    def marker(allow_new: bool = False) -> DatabaseMarker:
        return DatabaseMarker.beside(data, path, allow_new=allow_new)

    async with open_sqlite(path, marker=marker()) as store:  # the first start: made and marked
        await store.create_job(make_new_job(CLOCK.now()))
    assert marker().had_database()
    for gone in (path, path.with_name("upscale.db-wal"), path.with_name("upscale.db-shm")):
        gone.unlink(missing_ok=True)
    with pytest.raises(DatabaseLost, match="UPSCALE_ALLOW_NEW_DATABASE"):
        await SQLiteStore(path, marker=marker()).open()
    assert not path.exists()  # nothing was made in its place
    path.write_bytes(b"")  # an empty file is no better
    with pytest.raises(DatabaseLost, match="missing or empty"):
        await SQLiteStore(path, marker=marker()).open()
    async with open_sqlite(path, marker=marker(allow_new=True)) as store:  # the operator said so
        assert await store.list_jobs() == []
    async with open_sqlite(path, marker=marker()) as store:  # and from then on it is the database
        assert await store.schema_version() == len(load_migrations("sqlite"))
