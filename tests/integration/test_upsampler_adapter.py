"""The Upsampler adapter on the wire, against ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from orchestrator.providers.base import Provider, SubmitRequest
from orchestrator.providers.upsampler import UpsamplerProvider
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
)
from schemas.jobs import UpdateStatus
from tests.integration.provider_fixtures import Recorder, answering, raising, recorded_client

BASE_URL = "https://upsampler.test/api/v1"
API_KEY = "sk-live-do-not-leak-123"


async def queued_job(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "up-1", "status": "IN_QUEUE", "creditCost": 4})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder({"upsampler.test"}, queued_job)


@pytest.fixture
async def make_provider(
    recorder: Recorder,
) -> AsyncIterator[Callable[..., UpsamplerProvider]]:
    async with recorded_client(recorder) as client:

        def factory(**overrides: Any) -> UpsamplerProvider:
            kwargs: dict[str, Any] = {"base_url": BASE_URL + "/", "api_key": API_KEY}
            kwargs.update(overrides)
            return UpsamplerProvider(client, **kwargs)

        yield factory


def make_request(**overrides: Any) -> SubmitRequest:
    fields: dict[str, Any] = {
        "job_id": "job-42",
        "scale": 2.0,
        "options": {"endpoint": "smart", "globalCreativity": 7, "detail": 8},
        "image_url": "https://cdn.example/in.jpg",
        "callback_url": "https://orchestrator.example/hooks/upsampler/job-42?t=opaque",
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


def test_satisfies_the_provider_protocol(
    make_provider: Callable[..., UpsamplerProvider],
) -> None:
    provider: Provider = make_provider()
    assert (provider.name, provider.callback_mode, provider.needs_image_url) == (
        "upsampler",
        "job",
        True,
    )


async def test_submit_wire_request(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    accepted = await make_provider().submit(make_request())

    assert accepted.provider_job_id == "up-1"
    assert accepted.cost == 4.0
    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://upsampler.test/api/v1/smart-upscale"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "webhook": "https://orchestrator.example/hooks/upsampler/job-42?t=opaque",
        "input": {
            "imageUrl": "https://cdn.example/in.jpg",
            "upscaleFactor": 2,
            "globalCreativity": 7,
            "detail": 8,
        },
    }


async def test_submit_default_endpoint_and_no_webhook(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    await make_provider().submit(make_request(options={}, callback_url=None, scale=8.0))
    [request] = recorder.requests
    assert request.url.path == "/api/v1/precise-upscale"
    assert json.loads(request.content) == {
        "input": {"imageUrl": "https://cdn.example/in.jpg", "upscaleFactor": 8}
    }


async def test_submit_with_stored_bad_options_is_rejected_without_a_request(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    with pytest.raises(ProviderRejected) as info:
        await make_provider().submit(make_request(options={"endpoint": "smart", "resemblance": 3}))
    assert info.value.reason == "rejected_input"
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("exc_type", "expected"),
    [
        (httpx.ConnectError, ProviderUnavailable),
        (httpx.ConnectTimeout, ProviderUnavailable),
        (httpx.PoolTimeout, ProviderUnavailable),
        (httpx.ReadTimeout, ProviderUncertain),
        (httpx.WriteTimeout, ProviderUncertain),
        (httpx.ReadError, ProviderUncertain),
        (httpx.WriteError, ProviderUncertain),
        (httpx.RemoteProtocolError, ProviderUncertain),
    ],
)
async def test_submit_transport_errors(
    make_provider: Callable[..., UpsamplerProvider],
    recorder: Recorder,
    exc_type: type[Exception],
    expected: type[ProviderError],
) -> None:
    recorder.answer = raising(exc_type)
    with pytest.raises(ProviderError) as info:
        await make_provider().submit(make_request())
    assert type(info.value) is expected
    assert isinstance(info.value.__cause__, exc_type)
    assert API_KEY not in info.value.message
    if expected is ProviderUncertain:
        assert "may exist and be billed" in info.value.message
        assert not info.value.retryable
    else:
        assert info.value.retryable


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError],
)
async def test_poll_transport_errors_are_unavailable(
    make_provider: Callable[..., UpsamplerProvider],
    recorder: Recorder,
    exc_type: type[Exception],
) -> None:
    recorder.answer = raising(exc_type)
    with pytest.raises(ProviderUnavailable) as info:
        await make_provider().poll("up-1")
    assert isinstance(info.value.__cause__, exc_type)


async def test_overall_deadline(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    recorder.answer = slow
    provider = make_provider(submit_timeout_s=0.05, poll_timeout_s=0.05)
    with pytest.raises(ProviderUncertain):
        await provider.submit(make_request())
    with pytest.raises(ProviderUnavailable):
        await provider.poll("up-1")


async def test_poll_wire_request_and_success(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    recorder.answer = answering(
        200,
        json={
            "id": "up-1",
            "status": "SUCCESS",
            "imageUrl": "https://cdn.upsampler/full.png",
            "compressedImageUrl": "https://cdn.upsampler/small.jpg",
            "creditCost": 4,
        },
    )
    update = await make_provider().poll("up-1")

    [request] = recorder.requests
    assert request.method == "GET"
    assert str(request.url) == "https://upsampler.test/api/v1/status/up-1"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.content == b""
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "https://cdn.upsampler/full.png"
    assert update.provider_job_id == "up-1"
    assert update.cost == 4.0


@pytest.mark.parametrize(
    ("job_id", "raw_path"),
    [
        ("a/b?c#d", "/api/v1/status/a%2Fb%3Fc%23d"),
        ("..", "/api/v1/status/%2E%2E"),
        (".", "/api/v1/status/%2E"),
        ("sp ace", "/api/v1/status/sp%20ace"),
    ],
)
async def test_poll_quotes_the_id(
    make_provider: Callable[..., UpsamplerProvider],
    recorder: Recorder,
    job_id: str,
    raw_path: str,
) -> None:
    recorder.answer = answering(200, json={"id": job_id, "status": "IN_PROGRESS"})
    update = await make_provider().poll(job_id)
    [request] = recorder.requests
    assert request.url.raw_path.decode() == raw_path
    assert update.status is UpdateStatus.RUNNING


async def test_poll_404_fails_the_job(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    recorder.answer = answering(404, json={"error": "Job not found"})
    update = await make_provider().poll("up-1")
    assert update.status is UpdateStatus.FAILED
    assert update.provider_job_id == "up-1"
    assert update.failure is not None and update.failure.reason == "provider_failed"


async def test_throttled_over_the_wire(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    recorder.answer = answering(429, headers={"Retry-After": "42"}, text="Too Many Requests")
    with pytest.raises(ProviderThrottled) as info:
        await make_provider().submit(make_request())
    assert info.value.retry_after_s == 42.0


async def test_failed_inside_200_over_the_wire(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    recorder.answer = answering(200, json={"status": "FAILED", "error": "Image URL unreachable"})
    with pytest.raises(ProviderRejected, match="Image URL unreachable"):
        await make_provider().submit(make_request())


async def test_oversized_answers(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    big = b" " * (2 * 1024 * 1024)
    recorder.answer = answering(200, content=big)
    provider = make_provider()
    with pytest.raises(ProviderUncertain, match="larger than"):
        await provider.submit(make_request())
    with pytest.raises(ProviderUnavailable, match="larger than"):
        await provider.poll("up-1")
    # an error status is still classified by its code
    recorder.answer = answering(503, content=big)
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await provider.submit(make_request())


async def test_oversized_streamed_answer_without_length(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b"x" * 65536

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    recorder.answer = handler
    with pytest.raises(ProviderUnavailable, match="larger than"):
        await make_provider().poll("up-1")
    assert len(sent) < 64  # stopped reading at the cap


async def test_api_key_is_never_shown(
    make_provider: Callable[..., UpsamplerProvider], recorder: Recorder
) -> None:
    provider = make_provider()
    assert API_KEY not in repr(provider)
    recorder.answer = answering(401, json={"error": "Invalid API key"})
    with pytest.raises(ProviderRejected) as info:
        await provider.submit(make_request())
    assert info.value.reason == "provider_auth"
    assert API_KEY not in str(info.value)


def test_parse_callback_through_the_provider(
    make_provider: Callable[..., UpsamplerProvider],
) -> None:
    update = make_provider().parse_callback(b'{"id":"up-1","status":"FAILED","error":"nope"}')
    assert update.status is UpdateStatus.FAILED
