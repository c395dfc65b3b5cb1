"""The composition root's wiring, seen through what the orchestrator then does."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.common.clock import FakeClock
from orchestrator.common.settings import load_settings
from orchestrator.service.runtime import Runtime, build_runtime
from schemas.api import CreateJob
from schemas.jobs import JobState


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def hanging_provider() -> AsyncIterator[str]:
    """A provider on 127.0.0.1 that takes every request and never answers."""

    async def hang(request: Request) -> Response:
        await asyncio.Event().wait()
        return Response()

    port = _free_port()
    app = Starlette(routes=[Route("/{path:path}", hang, methods=["GET", "POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        await task


@pytest.fixture
async def runtime(tmp_path: Path, hanging_provider: str) -> AsyncIterator[Runtime]:
    settings = load_settings(
        {
            "UPSCALE_DATA_DIR": str(tmp_path / "data"),
            "UPSCALE_API_TOKENS": "t",
            "UPSCALE_SECRET_KEYS": "test-secret-key",
            "UPSCALE_UPSAMPLER_BASE_URL": f"{hanging_provider}/upsampler",
            "UPSCALE_PHOTIO_BASE_URL": f"{hanging_provider}/photio",
            "UPSCALE_SUBMIT_TIMEOUT_S": "60",
            "UPSCALE_SYNC_TIMEOUT_S": "300",
        }
    )
    rt = build_runtime(
        settings, listen_url="http://127.0.0.1:9", clock=FakeClock(), run_loops=False
    )
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def _cut_off_submit(runtime: Runtime, provider: str) -> str:
    """Start a submit the provider never answers, then lose the worker making it."""
    orchestrator = runtime.orchestrator
    job, _ = await orchestrator.create_job(
        CreateJob(provider, 2.0, {}, None, "https://in.example/a.png", None)
    )
    assert await orchestrator.run_due() == 1
    for _ in range(500):
        current = await runtime.store.get_job(job.id)
        assert current is not None
        if current.state is JobState.SUBMITTING:
            break
        await asyncio.sleep(0.01)
    for task in list(orchestrator._inflight):  # the worker dies mid-call
        task.cancel()
    await asyncio.wait(set(orchestrator._inflight))
    return job.id


async def _state_after(runtime: Runtime, job_id: str, seconds: float) -> JobState:
    clock = runtime.orchestrator.clock
    assert isinstance(clock, FakeClock)
    clock.advance(seconds)
    await runtime.orchestrator.run_until_idle()
    job = await runtime.store.get_job(job_id)
    assert job is not None
    return job.state


async def test_a_cut_off_async_submit_is_uncertain_after_the_submit_timeout(
    runtime: Runtime,
) -> None:
    job_id = await _cut_off_submit(runtime, "upsampler")
    # 60 s submit timeout and the margin: not yet at 60 s, uncertain at 91 s,
    # not held for the synchronous providers' 300 s.
    assert await _state_after(runtime, job_id, 60) is JobState.SUBMITTING
    assert await _state_after(runtime, job_id, 31) is JobState.UNCERTAIN


async def test_a_cut_off_sync_submit_is_held_for_the_sync_timeout(runtime: Runtime) -> None:
    job_id = await _cut_off_submit(runtime, "photio")
    # Photio's answer may take the whole sync timeout: no verdict before it.
    assert await _state_after(runtime, job_id, 300) is JobState.SUBMITTING
    assert await _state_after(runtime, job_id, 31) is JobState.UNCERTAIN
