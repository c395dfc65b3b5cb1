"""The orchestrator when the store refuses a write after a provider accepted a submit.

The provider is faked with ``httpx.MockTransport``; the store is a real SQLite
file behind a subclass that refuses the first few writes of one kind.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.common.settings import Secret
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.engine import Orchestrator
from orchestrator.core.inputs import InputStore
from orchestrator.domain.backoff import PollPolicy
from orchestrator.domain.states import Event
from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.providers.upsampler import UpsamplerProvider
from orchestrator.results.storage import LocalResultStorage
from orchestrator.security.signing import CallbackSigner, InputSigner
from orchestrator.store.protocol import Changes, DeliveryMark
from orchestrator.store.sqlite import SQLiteStore
from schemas.api import CreateJob
from schemas.errors import StoreUnavailable
from schemas.jobs import Job, JobState
from tests.integration.test_engine import FakeUpsampler


class RefusingStore(SQLiteStore):
    """Refuses the first ``refusals`` transitions by ``event``, as a busy database would."""

    def __init__(self, path: Path, event: Event, refusals: int) -> None:
        super().__init__(path)
        self.event = event
        self.refusals = refusals

    async def apply_transition(
        self,
        job: Job,
        event: Event,
        to_state: JobState,
        *,
        cause: str,
        changes: Changes | None = None,
        now: datetime,
        mark: DeliveryMark | None = None,
    ) -> Job | None:
        if event is self.event and self.refusals > 0:
            self.refusals -= 1
            raise StoreUnavailable("database write failed: database is locked")
        return await super().apply_transition(
            job, event, to_state, cause=cause, changes=changes, now=now, mark=mark
        )


@dataclass
class Rig:
    orchestrator: Orchestrator
    store: RefusingStore
    fake: FakeUpsampler

    async def submitted_job(self) -> Job:
        created, _ = await self.orchestrator.create_job(
            CreateJob("upsampler", 2.0, {}, None, "https://in.example/a.png", None)
        )
        await self.orchestrator.run_until_idle()
        job = await self.store.get_job(created.id)
        assert job is not None
        return job


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    refusals: int = request.param
    clock = FakeClock()
    fake = FakeUpsampler()
    api = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    files = httpx.AsyncClient(transport=httpx.MockTransport(fake.results))
    store = RefusingStore(tmp_path / "engine.db", Event.SUBMIT_ACCEPTED, refusals)
    await store.open()
    keys = [Secret("k" * 20)]
    storage = LocalResultStorage(tmp_path / "results")
    orchestrator = Orchestrator(
        config=EngineConfig(
            public_base="https://orchestrator.example",
            job_deadline_s=600,
            submit_timeout_s=5,
            input_url_ttl_s=600,
            poll=PollPolicy(grace_s=20, base_s=5, cap_s=60),
            store_retry_s=(0.0, 0.0, 0.0),
        ),
        store=store,
        providers={
            "upsampler": UpsamplerProvider(
                api, base_url="https://upsampler.example/api/v1", api_key="key"
            )
        },
        fetcher=ResultFetcher(files, storage, storage.tmp_dir, max_bytes=10**6, max_pixels=10**6),
        inputs=InputStore(
            LocalResultStorage(tmp_path / "inputs"), tmp_path / "inputs" / ".tmp", max_bytes=10**6
        ),
        callback_signer=CallbackSigner(keys, clock),
        input_signer=InputSigner(keys, clock),
        budgets=Budgets(store),
        clock=clock,
        rng=random.Random(3),
    )
    try:
        yield Rig(orchestrator, store, fake)
    finally:
        await api.aclose()
        await files.aclose()
        await store.close()


@pytest.mark.parametrize("rig", [3], indirect=True)
async def test_a_refused_accepted_write_is_retried_and_keeps_the_provider_id(rig: Rig) -> None:
    job = await rig.submitted_job()
    assert rig.fake.submits == 1
    assert job.state is JobState.SUBMITTED
    assert job.provider_job_id == "up-1"
    assert rig.store.refusals == 0


@pytest.mark.parametrize("rig", [10], indirect=True)
async def test_a_write_refused_past_every_retry_logs_the_provider_id(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    job = await rig.submitted_job()
    assert rig.fake.submits == 1
    # The provider has the job and we could not record its id: uncertain at once
    # (were the store refusing every write, the lease would say so later).
    assert job.state is JobState.UNCERTAIN
    unrecorded = [r for r in caplog.records if r.getMessage() == "submit.unrecorded"]
    assert [(r.job_id, r.provider_job_id) for r in unrecorded] == [(job.id, "up-1")]  # type: ignore[attr-defined]
