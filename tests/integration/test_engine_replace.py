"""A replace job through the engine: what its provider is asked, and its result
held to the input's size. The provider is a scripted fake behind the Provider
protocol; the result host is an ``httpx.MockTransport``; the store a real SQLite file."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.common.settings import Secret
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.engine import Orchestrator
from orchestrator.core.inputs import InputStore
from orchestrator.domain.backoff import PollPolicy
from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.providers.base import Accepted, CallbackMode, SubmitRequest
from orchestrator.results.storage import LocalResultStorage
from orchestrator.security.signing import CallbackSigner, InputSigner
from orchestrator.store.sqlite import SQLiteStore
from schemas.api import CreateJob
from schemas.jobs import FailureReason, Job, JobState, Operation, ProviderUpdate, UpdateStatus
from tests.factories import make_png

PUBLIC = "https://orchestrator.example"
IMAGE = make_png(40, 30, (10, 20, 30))
MASK = make_png(40, 30, (255, 255, 255))


@dataclass
class Replacer:
    """A synchronous provider offering replace; answers with ``result`` (bytes inline)
    or, when ``result`` is None, with a URL on the result host."""

    needs_image_url: bool = False
    result: bytes | None = None
    requests: list[SubmitRequest] = field(default_factory=list)
    name: str = "replacer"
    callback_mode: CallbackMode = "none"
    operations: frozenset[Operation] = frozenset({Operation.UPSCALE, Operation.REPLACE})

    def validate_options(
        self, scale: float, options: dict[str, Any], *, operation: Operation = Operation.UPSCALE
    ) -> dict[str, Any]:
        return options

    async def submit(self, request: SubmitRequest) -> Accepted:
        self.requests.append(request)
        update = ProviderUpdate(
            self.name,
            f"r-{request.job_id}",
            UpdateStatus.SUCCEEDED,
            result_url=None if self.result is not None else "https://results.example/out.png",
            result_bytes=self.result,
        )
        return Accepted(f"r-{request.job_id}", update=update)

    async def poll(self, provider_job_id: str) -> ProviderUpdate:
        raise AssertionError("a synchronous provider is never polled")

    def parse_callback(self, body: bytes) -> ProviderUpdate:
        raise AssertionError("a synchronous provider has no callbacks")


@dataclass
class Rig:
    orchestrator: Orchestrator
    store: SQLiteStore
    provider: Replacer
    download: list[bytes]

    async def create(self, operation: Operation = Operation.REPLACE) -> Job:
        replacing = operation is Operation.REPLACE
        job, _ = await self.orchestrator.create_job(
            CreateJob(
                "replacer",
                1.0 if replacing else 2.0,
                {},
                None,
                None,
                IMAGE,
                operation=operation,
                prompt="Butterfly" if replacing else None,
                mask_bytes=MASK if replacing else None,
            )
        )
        await self.orchestrator.run_until_idle()
        done = await self.store.get_job(job.id)
        assert done is not None
        return done


class _Body(httpx.AsyncByteStream):
    """A response body that streams, as a real download does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def _download(data: bytes) -> httpx.Response:
    return httpx.Response(200, stream=_Body(data), headers={"content-type": "image/png"})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock()
    download = [make_png(40, 30)]
    files = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: _download(download[0])))
    store = SQLiteStore(tmp_path / "engine.db")
    await store.open()
    keys = [Secret("k" * 20)]
    storage = LocalResultStorage(tmp_path / "results")
    provider = Replacer()
    orchestrator = Orchestrator(
        config=EngineConfig(
            public_base=PUBLIC,
            job_deadline_s=600,
            submit_timeout_s=5,
            input_url_ttl_s=600,
            poll=PollPolicy(grace_s=20, base_s=5, cap_s=60),
        ),
        store=store,
        providers={"replacer": provider},
        fetcher=ResultFetcher(
            files,
            storage,
            storage.tmp_dir,
            max_bytes=10**6,
            max_pixels=10**6,
            sleep=lambda s: asyncio.sleep(0),
        ),
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
        yield Rig(orchestrator, store, provider, download)
    finally:
        await files.aclose()
        await store.close()


def _input_key(rig: Rig, url: str | None) -> str:
    assert url is not None and url.startswith(f"{PUBLIC}/inputs/")
    return rig.orchestrator.input_signer.verify(url.rsplit("/", 1)[-1])


async def test_a_provider_taking_data_gets_signed_urls_and_the_bytes(rig: Rig) -> None:
    job = await rig.create()
    assert job.state is JobState.SUCCEEDED, job.failure
    [request] = rig.provider.requests
    assert (request.operation, request.prompt) == (Operation.REPLACE, "Butterfly")
    assert (request.image_bytes, request.mask_bytes) == (IMAGE, MASK)
    assert _input_key(rig, request.image_url) == job.input_key
    assert _input_key(rig, request.mask_url) == job.mask_key


async def test_a_provider_needing_urls_gets_only_the_signed_urls(rig: Rig) -> None:
    rig.provider.needs_image_url = True
    job = await rig.create()
    [request] = rig.provider.requests
    assert (request.image_bytes, request.mask_bytes) == (None, None)
    assert _input_key(rig, request.image_url) == job.input_key
    assert _input_key(rig, request.mask_url) == job.mask_key


async def test_an_upscale_is_asked_as_before(rig: Rig) -> None:
    await rig.create(Operation.UPSCALE)
    [request] = rig.provider.requests
    assert request.operation is Operation.UPSCALE
    assert (request.image_url, request.image_bytes) == (None, IMAGE)
    assert (request.prompt, request.mask_url, request.mask_bytes) == (None, None, None)


async def test_a_downloaded_result_of_another_size_fails_the_job(rig: Rig) -> None:
    rig.download[0] = make_png(80, 60)
    job = await rig.create()
    assert job.state is JobState.FAILED and job.failure is not None
    assert job.failure.reason == FailureReason.RESULT_INVALID
    assert "result is 80x60 pixels but the input is 40x30" in job.failure.message
    assert job.result is None


async def test_an_inline_result_of_another_size_fails_the_job(rig: Rig) -> None:
    rig.provider.result = make_png(40, 31)
    job = await rig.create()
    assert job.state is JobState.FAILED and job.failure is not None
    assert job.failure.reason == FailureReason.RESULT_INVALID
    assert "result is 40x31 pixels but the input is 40x30" in job.failure.message


async def test_an_inline_result_of_the_inputs_size_succeeds(rig: Rig) -> None:
    rig.provider.result = make_png(40, 30, (1, 1, 1))
    job = await rig.create()
    assert job.state is JobState.SUCCEEDED
    assert job.result is not None and (job.result.width, job.result.height) == (40, 30)


async def test_an_upscale_result_of_any_size_is_kept(rig: Rig) -> None:
    rig.download[0] = make_png(80, 60)
    job = await rig.create(Operation.UPSCALE)
    assert job.state is JobState.SUCCEEDED
