"""The Photio and Artnex adapters on the wire, against ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from orchestrator.providers.artnex import ArtnexProvider
from orchestrator.providers.base import Provider, SubmitRequest
from orchestrator.providers.photio import PhotioProvider
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
    RejectedPayload,
)
from schemas.jobs import UpdateStatus
from tests.integration.provider_fixtures import Recorder, answering, raising, recorded_client

PHOTIO_URL = "https://photio.test"
ARTNEX_URL = "https://artnex.test"
API_KEY = "pt-live-do-not-leak-123"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
AnyProvider = PhotioProvider | ArtnexProvider


def make_png(width: int = 8, height: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (9, 8, 7)).save(buf, format="PNG")
    return buf.getvalue()


PNG = make_png()
B64 = base64.b64encode(PNG).decode()


async def success(request: httpx.Request) -> httpx.Response:
    if request.url.host == "photio.test":
        return httpx.Response(200, json={"status_code": 200, "body": B64})
    return httpx.Response(
        200,
        json={
            "success": True,
            "image_url": "https://cdn.artnex.test/req_1/upscaled.png",
            "request_id": "req_1",
            "credits_used": 100,
        },
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder({"photio.test", "artnex.test"}, success)


@pytest.fixture
async def client(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    async with recorded_client(recorder) as c:
        yield c


def photio(client: httpx.AsyncClient, **overrides: Any) -> PhotioProvider:
    kwargs: dict[str, Any] = {"base_url": PHOTIO_URL + "/", "api_key": API_KEY}
    kwargs.update(overrides)
    return PhotioProvider(client, **kwargs)


def artnex(client: httpx.AsyncClient, **overrides: Any) -> ArtnexProvider:
    kwargs: dict[str, Any] = {"base_url": ARTNEX_URL, "api_key": API_KEY}
    kwargs.update(overrides)
    return ArtnexProvider(client, **kwargs)


MAKERS: dict[str, Callable[..., AnyProvider]] = {"photio": photio, "artnex": artnex}


def make_request(**overrides: Any) -> SubmitRequest:
    fields: dict[str, Any] = {
        "job_id": "job-42",
        "scale": 2.0,
        "options": {},
        "image_url": None,
        "image_bytes": PNG,
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


# --- protocol --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["photio", "artnex"])
def test_satisfies_the_provider_protocol(client: httpx.AsyncClient, name: str) -> None:
    provider: Provider = MAKERS[name](client)
    assert (provider.name, provider.callback_mode, provider.needs_image_url) == (
        name,
        "none",
        False,
    )
    assert API_KEY not in repr(provider)


@pytest.mark.parametrize("name", ["photio", "artnex"])
async def test_no_status_endpoint_and_no_callbacks(
    client: httpx.AsyncClient, recorder: Recorder, name: str
) -> None:
    provider = MAKERS[name](client)
    with pytest.raises(ProviderRejected, match="no status endpoint") as info:
        await provider.poll("anything")
    assert not info.value.retryable
    with pytest.raises(RejectedPayload, match="no callbacks"):
        provider.parse_callback(b'{"status":"SUCCESS"}')
    assert recorder.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [{"base_url": "ftp://x"}, {"submit_timeout_s": 0}, {"submit_timeout_s": -1}],
)
@pytest.mark.parametrize("name", ["photio", "artnex"])
def test_constructor_checks(client: httpx.AsyncClient, name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MAKERS[name](client, **kwargs)


# --- Photio on the wire ----------------------------------------------------------------


async def test_photio_wire_request_with_bytes(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    options = {"quality": "high", "prompt": "a red square", "denoising_strength": 0.5}
    accepted = await photio(client).submit(make_request(scale=4.0, options=options))

    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://photio.test/v1/inference/upscale"
    assert request.headers["X-Photio-Key"] == API_KEY
    assert "Authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "image": B64,
        "upscale_by": 4,
        "quality": "HIGH",
        "prompt": "a red square",
        "denoising_strength": 0.5,
    }
    assert accepted.update is not None
    assert accepted.update.status is UpdateStatus.SUCCEEDED
    assert accepted.update.result_bytes == PNG
    assert accepted.provider_job_id.startswith("photio-")


async def test_photio_wire_request_with_url(client: httpx.AsyncClient, recorder: Recorder) -> None:
    request = make_request(image_bytes=None, image_url="https://cdn.example/in.jpg")
    await photio(client, base_url="https://photio.test/prefix/").submit(request)
    [sent] = recorder.requests
    assert str(sent.url) == "https://photio.test/prefix/v1/inference/upscale"
    assert json.loads(sent.content) == {"image": "https://cdn.example/in.jpg", "upscale_by": 2}


async def test_photio_bad_options_are_refused_without_a_request(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    with pytest.raises(ProviderRejected) as info:
        await photio(client).submit(make_request(scale=3.0))
    assert info.value.reason == "rejected_input"
    with pytest.raises(ProviderRejected) as info:
        await photio(client).submit(make_request(options={"quality": "ULTRA"}))
    assert info.value.reason == "rejected_input"
    assert recorder.requests == []


async def test_photio_data_uri_and_status_in_body(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    recorder.answer = answering(
        200, json={"status_code": 200, "body": "data:image/png;base64," + B64}
    )
    accepted = await photio(client).submit(make_request())
    assert accepted.update is not None and accepted.update.result_bytes == PNG

    recorder.answer = answering(200, json={"status_code": 500, "body": ""})
    with pytest.raises(ProviderRejected) as info:
        await photio(client).submit(make_request())
    assert info.value.reason == "provider_failed"


async def test_photio_large_answer_is_read_whole(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    big = PNG + bytes(3 * 1024 * 1024)  # a PNG signature and 3 MiB: 4 MiB of base64
    body = json.dumps({"status_code": 200, "body": base64.b64encode(big).decode()}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    recorder.answer = handler
    accepted = await photio(client).submit(make_request())
    assert accepted.update is not None and accepted.update.result_bytes == big


async def test_photio_oversized_answer_is_uncertain(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    cap = 1024 * 1024
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b"x" * 65536

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    recorder.answer = handler
    provider = photio(client, max_response_bytes=cap)
    with pytest.raises(ProviderUncertain, match="larger than 1048576 bytes") as info:
        await provider.submit(make_request())
    assert "billed" in info.value.message
    assert len(sent) < 64  # stopped reading at the cap

    recorder.answer = answering(200, content=b" " * (cap + 1))  # declared length
    with pytest.raises(ProviderUncertain, match="larger than"):
        await provider.submit(make_request())
    # an error status is still classified by its code
    recorder.answer = answering(503, content=b" " * (2 * cap))
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await provider.submit(make_request())


def test_photio_cap_must_fit_a_normal_answer(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="max_response_bytes"):
        photio(client, max_response_bytes=1000)


# --- Artnex on the wire ----------------------------------------------------------------


async def test_artnex_wire_request_with_bytes(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    accepted = await artnex(client).submit(make_request(scale=4.0))

    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://artnex.test/v1/upscale"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"image": f"data:image/png;base64,{B64}", "scale": 4}
    assert accepted.provider_job_id == "req_1"
    assert accepted.cost == 100.0
    assert accepted.update is not None
    assert accepted.update.status is UpdateStatus.SUCCEEDED
    assert accepted.update.result_url == "https://cdn.artnex.test/req_1/upscaled.png"


async def test_artnex_wire_request_with_url(client: httpx.AsyncClient, recorder: Recorder) -> None:
    request = make_request(image_bytes=None, image_url="https://cdn.example/in.jpg", scale=2.5)
    await artnex(client).submit(request)
    [sent] = recorder.requests
    assert json.loads(sent.content) == {"image": "https://cdn.example/in.jpg", "scale": 2.5}


@pytest.mark.parametrize(
    "request_overrides",
    [
        {"scale": 8.0},
        {"options": {"quality": "high"}},
        {"image_bytes": b"GIF89a" + bytes(100)},
        {"image_bytes": PNG + bytes(10_000_000)},
    ],
)
async def test_artnex_unsendable_jobs_are_refused_without_a_request(
    client: httpx.AsyncClient, recorder: Recorder, request_overrides: dict[str, Any]
) -> None:
    with pytest.raises(ProviderRejected) as info:
        await artnex(client).submit(make_request(**request_overrides))
    assert info.value.reason == "rejected_input"
    assert recorder.requests == []


@pytest.mark.parametrize(("headers", "expected"), [({"Retry-After": "90"}, 90.0), ({}, 3600.0)])
async def test_artnex_daily_quota(
    client: httpx.AsyncClient,
    recorder: Recorder,
    headers: dict[str, str],
    expected: float,
) -> None:
    recorder.answer = answering(
        429,
        headers=headers,
        json={"success": False, "error": "rate_limit_exceeded", "message": "daily quota"},
    )
    with pytest.raises(ProviderThrottled) as info:
        await artnex(client).submit(make_request())
    assert info.value.retry_after_s == expected


async def test_artnex_error_inside_200(client: httpx.AsyncClient, recorder: Recorder) -> None:
    recorder.answer = answering(
        200, json={"success": False, "error": "insufficient_credits", "message": "top up"}
    )
    with pytest.raises(ProviderRejected, match="top up") as info:
        await artnex(client).submit(make_request())
    assert info.value.reason == "insufficient_credit"


async def test_artnex_oversized_answer_is_uncertain(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    recorder.answer = answering(200, content=b" " * (2 * 1024 * 1024))
    with pytest.raises(ProviderUncertain, match="larger than"):
        await artnex(client).submit(make_request())


# --- transport, both -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["photio", "artnex"])
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
async def test_transport_errors(
    client: httpx.AsyncClient,
    recorder: Recorder,
    name: str,
    exc_type: type[Exception],
    expected: type[ProviderError],
) -> None:
    recorder.answer = raising(exc_type)
    with pytest.raises(ProviderError) as info:
        await MAKERS[name](client).submit(make_request())
    assert type(info.value) is expected
    assert isinstance(info.value.__cause__, exc_type)
    assert API_KEY not in info.value.message
    if expected is ProviderUncertain:
        assert "may have been billed" in info.value.message
        assert not info.value.retryable
    else:
        assert "nothing was sent" in info.value.message
        assert info.value.retryable


@pytest.mark.parametrize("name", ["photio", "artnex"])
async def test_overall_deadline_is_uncertain(
    client: httpx.AsyncClient, recorder: Recorder, name: str
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    recorder.answer = slow
    with pytest.raises(ProviderUncertain, match="TimeoutError"):
        await MAKERS[name](client, submit_timeout_s=0.05).submit(make_request())


@pytest.mark.parametrize("name", ["photio", "artnex"])
async def test_the_long_timeout_reaches_httpx(
    client: httpx.AsyncClient, recorder: Recorder, name: str
) -> None:
    await MAKERS[name](client, submit_timeout_s=240).submit(make_request())
    [request] = recorder.requests
    timeout = request.extensions["timeout"]
    assert timeout["read"] == 240.0
    assert timeout["connect"] == 10.0


@pytest.mark.parametrize("name", ["photio", "artnex"])
async def test_auth_refusal_never_shows_the_key(
    client: httpx.AsyncClient, recorder: Recorder, name: str
) -> None:
    recorder.answer = answering(
        401, json={"success": False, "error": "invalid_api_key", "status_code": 401}
    )
    with pytest.raises(ProviderRejected) as info:
        await MAKERS[name](client).submit(make_request())
    assert info.value.reason == "provider_auth"
    assert API_KEY not in str(info.value)


@pytest.mark.parametrize("name", ["photio", "artnex"])
async def test_redirects_are_not_followed(
    client: httpx.AsyncClient, recorder: Recorder, name: str
) -> None:
    recorder.answer = answering(307, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(ProviderRejected) as info:
        await MAKERS[name](client).submit(make_request())
    assert info.value.reason == "provider_failed"
    assert len(recorder.requests) == 1
