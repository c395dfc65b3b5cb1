"""The Store contract for routing: attempts moved with compare-and-set, provider
health shared by workers, spend counted once. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.domain.cooldown import CooldownPolicy, HealthState
from orchestrator.domain.states import Event
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.protocol import Changes, Store
from orchestrator.store.sqlite import SQLiteStore
from schemas.jobs import Attempt, Failure, Job, JobState
from tests.factories import make_new_job
from tests.postgres_db import migrated_and_empty
from tests.unit.test_layers import ROOT

CLOCK = FakeClock()
POLICY = CooldownPolicy(threshold=2, base_s=10, cap_s=40, probe_lease_s=30)


async def _where(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return str(tmp_path / "routing.db")
    return await migrated_and_empty(request.getfixturevalue("postgres_database"))


async def _open(kind: str, where: str) -> Store:
    impl: SQLiteStore | PostgresStore
    impl = SQLiteStore(Path(where)) if kind == "sqlite" else PostgresStore(where)
    await impl.open()
    return impl


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two workers would have."""
    where = await _where(request.param, request, tmp_path)
    first = await _open(request.param, where)
    second = await _open(request.param, where)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


async def _routed(store: Store) -> Job:
    job, _ = await store.create_job(
        make_new_job(
            CLOCK.now(),
            route=("upsampler", "fotor", "local"),
            route_name="default",
            route_options={"upsampler": {"endpoint": "precise"}, "fotor": {}, "local": {}},
            max_cost=10.0,
        )
    )
    return job


def _move(job: Job, to: str, failure: Failure) -> Changes:
    now = CLOCK.now()
    ended = Attempt(
        number=job.attempt,
        provider=job.provider,
        provider_job_id=job.provider_job_id,
        state=JobState.FAILED.value,
        failure=failure,
        cost=job.cost,
        started_at=job.attempt_started_at or job.created_at,
        ended_at=now,
    )
    return Changes(
        provider=to,
        options=job.route_options.get(to, {}),
        attempt=job.attempt + 1,
        attempt_started_at=now,
        past_attempts=(*job.past_attempts, ended),
        provider_job_id=None,
        failure=None,
        cost=None,
        result_url=None,
        next_check_at=now,
    )


async def test_a_routed_job_keeps_its_route_and_starts_at_attempt_one(
    stores: tuple[Store, Store],
) -> None:
    store, _ = stores
    job = await _routed(store)
    read = await store.get_job(job.id)
    assert read is not None
    assert read.route == ("upsampler", "fotor", "local") and read.route_name == "default"
    assert read.route_options["upsampler"] == {"endpoint": "precise"}
    assert read.max_cost == 10.0
    assert read.attempt == 1 and read.past_attempts == ()
    assert read.attempt_started_at == job.created_at


async def test_two_workers_moving_one_job_on_make_one_new_attempt(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    job = await _routed(first)
    started = await first.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert started is not None
    why = Failure("insufficient_credit", "out of credit")
    moves = await asyncio.gather(
        first.apply_transition(
            started, Event.FAIL_OVER, JobState.QUEUED, cause="a",
            changes=_move(started, "fotor", why), now=CLOCK.now(),
        ),
        second.apply_transition(
            started, Event.FAIL_OVER, JobState.QUEUED, cause="b",
            changes=_move(started, "local", why), now=CLOCK.now(),
        ),
    )  # fmt: skip
    done = [m for m in moves if m is not None]
    assert len(done) == 1
    read = await first.get_job(job.id)
    assert read is not None
    assert read.attempt == 2 and len(read.past_attempts) == 1
    assert read.past_attempts[0].provider == "upsampler"
    assert read.past_attempts[0].failure == why
    assert read.provider == done[0].provider and read.state is JobState.QUEUED


async def test_a_move_writes_the_attempt_failed_and_failed_over_events(
    stores: tuple[Store, Store],
) -> None:
    store, _ = stores
    job = await _routed(store)
    started = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert started is not None
    why = Failure("provider_auth", "key refused")
    await store.apply_transition(
        started, Event.FAIL_OVER, JobState.QUEUED, cause="t",
        changes=_move(started, "fotor", why), now=CLOCK.now(),
    )  # fmt: skip
    events = await store.list_events(job_id=job.id)
    kinds = [e.type for e in events]
    assert kinds == ["job.queued", "job.attempt_failed", "job.failed_over"]
    failed = json.loads(events[1].body)["data"]
    assert failed["attempt"]["provider"] == "upsampler"
    assert failed["attempt"]["reason"] == "provider_auth"
    over = json.loads(events[2].body)["data"]
    assert over["failover"] == {"from": "upsampler", "to": "fotor", "attempt": 2}
    assert over["provider"] == "fotor"
    schema = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
    for event in events:
        jsonschema.validate(json.loads(event.body), schema)


async def test_spend_is_counted_once_when_each_attempt_ends(stores: tuple[Store, Store]) -> None:
    store, _ = stores
    job = await _routed(store)
    started = await store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert started is not None
    accepted = await store.apply_transition(
        started, Event.SUBMIT_ACCEPTED, JobState.SUBMITTED, cause="t",
        changes=Changes(provider_job_id="up-1", cost=3.0), now=CLOCK.now(),
    )  # fmt: skip
    assert accepted is not None
    moved = await store.apply_transition(
        accepted, Event.FAIL_OVER, JobState.QUEUED, cause="t",
        changes=_move(accepted, "fotor", Failure("provider_failed", "x")), now=CLOCK.now(),
    )  # fmt: skip
    assert moved is not None and moved.spent == 3.0
    again = await store.apply_transition(
        moved, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=CLOCK.now()
    )
    assert again is not None
    sent = await store.apply_transition(
        again, Event.SUBMIT_ACCEPTED, JobState.SUBMITTED, cause="t",
        changes=Changes(provider_job_id="fo-1", cost=2.0), now=CLOCK.now(),
    )  # fmt: skip
    assert sent is not None
    await store.apply_transition(
        sent, Event.PROVIDER_FAILED, JobState.FAILED, cause="t",
        changes=Changes(failure=Failure("provider_failed", "y")), now=CLOCK.now(),
    )  # fmt: skip
    spend = await store.spend_today(now=CLOCK.now())
    assert spend["upsampler"].credits == 3.0 and spend["upsampler"].jobs == 1
    assert spend["fotor"].credits == 2.0 and spend["fotor"].jobs == 1
    # The old attempt's provider job id no longer finds the job: its late callbacks
    # are kept unmatched, never applied to the new attempt.
    assert await store.find_job("upsampler", "up-1") is None


async def test_provider_health_is_shared_and_admits_one_probe(stores: tuple[Store, Store]) -> None:
    first, second = stores
    t0 = CLOCK.now()
    await first.record_provider_result("fotor", ok=False, now=t0, policy=POLICY)
    health = await second.record_provider_result("fotor", ok=False, now=t0, policy=POLICY)
    assert health.state(t0) is HealthState.COOLING
    assert not await first.admit_provider("fotor", "job_a", now=t0, policy=POLICY)
    assert await first.admit_provider("upsampler", "job_a", now=t0, policy=POLICY)
    later = t0 + timedelta(seconds=11)
    admitted = await asyncio.gather(
        *[
            (first if i % 2 else second).admit_provider(
                "fotor", f"job_{i}", now=later, policy=POLICY
            )
            for i in range(6)
        ]
    )
    assert sum(admitted) == 1
    seen = await second.provider_health()
    assert seen["fotor"].state(later) is HealthState.PROBING
    assert seen["fotor"].total_failures == 2 and seen["fotor"].cooldowns == 1
    await first.record_provider_result("fotor", ok=True, now=later, policy=POLICY)
    assert (await second.provider_health())["fotor"].state(later) is HealthState.HEALTHY


async def test_failures_from_many_workers_are_all_counted(stores: tuple[Store, Store]) -> None:
    first, second = stores
    policy = CooldownPolicy(threshold=100)
    await asyncio.gather(
        *[
            (first if i % 2 else second).record_provider_result(
                "photio", ok=False, now=CLOCK.now(), policy=policy
            )
            for i in range(20)
        ]
    )
    assert (await first.provider_health())["photio"].failures == 20
