"""The Fotor adapter on the wire, against ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from orchestrator.providers.base import HasBalance, Provider, SubmitRequest
from orchestrator.providers.fotor import FotorProvider
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
)
from schemas.jobs import Operation, UpdateStatus
from tests.factories import make_png
from tests.integration.provider_fixtures import (
    Handler,
    Recorder,
    answering,
    raising,
    recorded_client,
)

BASE_URL = "https://fotor.test"
API_KEY = "fotor-live-do-not-leak-123"
TASK_ID = "e0dc194703174b6eafeacb4ee8e02850"


async def accepted_task(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"code": "000", "msg": "success", "data": {"taskId": TASK_ID}})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder({"fotor.test"}, accepted_task)


@pytest.fixture
async def make_provider(recorder: Recorder) -> AsyncIterator[Callable[..., FotorProvider]]:
    async with recorded_client(recorder) as client:

        def factory(**overrides: Any) -> FotorProvider:
            kwargs: dict[str, Any] = {"base_url": BASE_URL + "/", "api_key": API_KEY}
            kwargs.update(overrides)
            return FotorProvider(client, **kwargs)

        yield factory


def make_request(**overrides: Any) -> SubmitRequest:
    fields: dict[str, Any] = {
        "job_id": "job-42",
        "scale": 2.0,
        "options": {},
        "image_url": "https://cdn.example/in.jpg",
        "callback_url": "https://orchestrator.example/hooks/fotor",
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


def task_answer(**data: Any) -> Handler:
    body = {"taskId": TASK_ID, "status": 0, "resultUrl": "", "hasHsfw": False, **data}
    return answering(200, json={"code": "000", "msg": "success", "data": body})


def test_satisfies_the_provider_protocol(make_provider: Callable[..., FotorProvider]) -> None:
    provider: Provider = make_provider()
    assert isinstance(provider, HasBalance)
    assert (provider.name, provider.callback_mode, provider.needs_image_url) == (
        "fotor",
        "account",
        False,
    )
    assert provider.operations == {Operation.UPSCALE, Operation.REPLACE}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "ftp://fotor.test"},
        {"s3_base_url": "s3://bucket"},
        {"submit_timeout_s": 0},
        {"max_image_width": 10},
        {"max_image_height": 9000},
    ],
)
def test_constructor_checks(make_provider: Callable[..., FotorProvider], kwargs: Any) -> None:
    with pytest.raises(ValueError):
        make_provider(**kwargs)


def test_validate_options_uses_constructor_defaults(
    make_provider: Callable[..., FotorProvider],
) -> None:
    provider = make_provider(max_image_width=1024, max_image_height=768)
    assert provider.validate_options(2, {}) == {"max_image_width": 1024, "max_image_height": 768}
    assert provider.validate_options(4, {"max_image_height": 4096}) == {
        "max_image_width": 1024,
        "max_image_height": 4096,
    }


async def test_submit_wire_request(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    accepted = await make_provider().submit(make_request())

    assert accepted.provider_job_id == TASK_ID
    assert accepted.update is None
    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://fotor.test/v1/aiart/imgupscale"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    # No callback field: Fotor's webhook is account-wide.
    assert json.loads(request.content) == {
        "upscaling_resize": 2,
        "userImageUrl": "https://cdn.example/in.jpg",
        "max_image_width": 2048,
        "max_image_height": 2048,
    }


async def test_submit_bytes_as_data_uri(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    png = make_png(8, 6)
    provider = make_provider(max_image_width=1000)
    await provider.submit(
        make_request(image_url=None, image_bytes=png, scale=2.5, options={"max_image_height": 512})
    )
    [request] = recorder.requests
    body = json.loads(request.content)
    assert body["upscaling_resize"] == 2.5
    assert (body["max_image_width"], body["max_image_height"]) == (1000, 512)
    prefix, _, data = body["userImageUrl"].partition(",")
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(data) == png


async def test_submit_jpeg_bytes_get_the_jpeg_type(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 32
    await make_provider().submit(make_request(image_url=None, image_bytes=jpeg))
    [request] = recorder.requests
    assert json.loads(request.content)["userImageUrl"].startswith("data:image/jpeg;base64,")


@pytest.mark.parametrize(
    ("scale", "options"), [(5, {}), (2, {"endpoint": "precise"}), (2, {"max_image_width": 1})]
)
async def test_submit_with_bad_options_is_rejected_without_a_request(
    make_provider: Callable[..., FotorProvider],
    recorder: Recorder,
    scale: float,
    options: dict[str, Any],
) -> None:
    with pytest.raises(ProviderRejected) as info:
        await make_provider().submit(make_request(scale=scale, options=options))
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
        (httpx.RemoteProtocolError, ProviderUncertain),
    ],
)
async def test_submit_transport_errors(
    make_provider: Callable[..., FotorProvider],
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
    "exc_type", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
async def test_poll_and_balance_transport_errors_are_unavailable(
    make_provider: Callable[..., FotorProvider],
    recorder: Recorder,
    exc_type: type[Exception],
) -> None:
    recorder.answer = raising(exc_type)
    provider = make_provider()
    with pytest.raises(ProviderUnavailable) as info:
        await provider.poll(TASK_ID)
    assert isinstance(info.value.__cause__, exc_type)
    with pytest.raises(ProviderUnavailable):
        await provider.balance()


async def test_overall_deadline(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    recorder.answer = slow
    provider = make_provider(submit_timeout_s=0.05, poll_timeout_s=0.05)
    with pytest.raises(ProviderUncertain):
        await provider.submit(make_request())
    with pytest.raises(ProviderUnavailable):
        await provider.poll(TASK_ID)


async def test_poll_wire_request_and_success(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    recorder.answer = task_answer(
        status=1, resultUrl="https://pub-static.fotor.com/r/out.jpg", creditsIncrement=1
    )
    update = await make_provider().poll(TASK_ID)

    [request] = recorder.requests
    assert request.method == "GET"
    assert str(request.url) == f"https://fotor.test/v1/aiart/tasks/{TASK_ID}"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.content == b""
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "https://pub-static.fotor.com/r/out.jpg"
    assert update.provider_job_id == TASK_ID
    assert update.cost == 1.0


async def test_poll_rewrites_s3_with_the_configured_base(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    recorder.answer = task_answer(status=1, resultUrl="s3://img-pub-fotor/r/out.jpg")
    update = await make_provider(s3_base_url="https://mirror.test/s3/").poll(TASK_ID)
    assert update.result_url == "https://mirror.test/s3/r/out.jpg"


async def test_poll_quotes_the_id(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    recorder.answer = answering(200, json={"code": "000", "data": {"taskId": "a/b?c", "status": 0}})
    update = await make_provider().poll("a/b?c")
    [request] = recorder.requests
    assert request.url.raw_path.decode() == "/v1/aiart/tasks/a%2Fb%3Fc"
    assert update.status is UpdateStatus.RUNNING


async def test_poll_errors_over_the_wire(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    provider = make_provider()
    recorder.answer = answering(429, json={"code": "429", "msg": "slow down"})
    with pytest.raises(ProviderThrottled) as throttled:
        await provider.poll(TASK_ID)
    assert throttled.value.retry_after_s == 30.0
    recorder.answer = answering(502, text="Bad Gateway")
    with pytest.raises(ProviderUnavailable):
        await provider.poll(TASK_ID)
    recorder.answer = answering(200, json={"code": "999", "msg": "unknown error"})
    with pytest.raises(ProviderUnavailable):
        await provider.poll(TASK_ID)


async def test_errors_inside_200_over_the_wire(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    provider = make_provider()
    recorder.answer = answering(200, json={"code": "510", "msg": "No enough credits"})
    with pytest.raises(ProviderRejected) as info:
        await provider.submit(make_request())
    assert info.value.reason == "insufficient_credit"
    recorder.answer = answering(200, json={"code": "999", "msg": "unknown error", "data": None})
    with pytest.raises(ProviderRejected) as info:
        await provider.submit(make_request())
    assert info.value.reason == "provider_failed"


async def test_throttled_submit_over_the_wire(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    recorder.answer = answering(429, headers={"Retry-After": "42"}, text="Too Many Requests")
    with pytest.raises(ProviderThrottled) as info:
        await make_provider().submit(make_request())
    assert info.value.retry_after_s == 42.0


async def test_balance(make_provider: Callable[..., FotorProvider], recorder: Recorder) -> None:
    recorder.answer = answering(
        200,
        json={
            "code": "000",
            "msg": "success",
            "data": {"businessId": "biz-1", "total": 1000, "remaining": 997},
        },
    )
    assert await make_provider().balance() == {
        "business_id": "biz-1",
        "total": 1000,
        "remaining": 997,
    }
    [request] = recorder.requests
    assert request.method == "GET"
    assert str(request.url) == "https://fotor.test/v1/credits"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_balance_errors(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    provider = make_provider()
    recorder.answer = answering(401, json={"code": "401", "msg": "invalid key"})
    with pytest.raises(ProviderRejected) as info:
        await provider.balance()
    assert info.value.reason == "provider_auth"
    recorder.answer = answering(429, headers={"Retry-After": "5"})
    with pytest.raises(ProviderThrottled):
        await provider.balance()
    recorder.answer = answering(503)
    with pytest.raises(ProviderUnavailable):
        await provider.balance()


async def test_oversized_answers(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    big = b" " * (2 * 1024 * 1024)
    recorder.answer = answering(200, content=big)
    provider = make_provider()
    with pytest.raises(ProviderUncertain, match="larger than"):
        await provider.submit(make_request())
    with pytest.raises(ProviderUnavailable, match="larger than"):
        await provider.poll(TASK_ID)
    with pytest.raises(ProviderUnavailable, match="larger than"):
        await provider.balance()
    recorder.answer = answering(503, content=big)
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await provider.submit(make_request())


async def test_oversized_streamed_answer_without_length(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
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
        await make_provider().poll(TASK_ID)
    assert len(sent) < 64  # stopped reading at the cap


async def test_api_key_is_never_shown(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    provider = make_provider()
    assert API_KEY not in repr(provider)
    recorder.answer = answering(401, json={"code": "401", "msg": "Invalid API key"})
    with pytest.raises(ProviderRejected) as info:
        await provider.submit(make_request())
    assert info.value.reason == "provider_auth"
    assert API_KEY not in str(info.value)


def test_parse_callback_through_the_provider(
    make_provider: Callable[..., FotorProvider],
) -> None:
    provider = make_provider(s3_base_url="https://mirror.test")
    update = provider.parse_callback(
        json.dumps(
            {"taskId": TASK_ID, "status": 1, "resultUrl": "s3://img-pub-fotor/k/x.png"}
        ).encode()
    )
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "https://mirror.test/k/x.png"


# --- AI Replace --------------------------------------------------------------------

MASK_URL = "https://cdn.example/mask.png"


def make_replace(**overrides: Any) -> SubmitRequest:
    fields: dict[str, Any] = {
        "operation": Operation.REPLACE,
        "prompt": "Butterfly",
        "mask_url": MASK_URL,
        "scale": 1.0,
    }
    fields.update(overrides)
    return make_request(**fields)


def test_replace_options_ignore_the_scale(make_provider: Callable[..., FotorProvider]) -> None:
    provider = make_provider()
    assert provider.validate_options(1.0, {}, operation=Operation.REPLACE) == {}
    assert provider.validate_options(9.0, {}, operation=Operation.REPLACE) == {}


async def test_replace_wire_request(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    accepted = await make_provider().submit(make_replace(image_bytes=b"\x89PNG\r\n\x1a\n"))

    assert accepted.provider_job_id == TASK_ID
    assert accepted.update is None
    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://fotor.test/v1/aiart/replacer"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    # As documented: URLs for both images, the prompt as ``content``, no callback field.
    assert json.loads(request.content) == {
        "imageUrl": "https://cdn.example/in.jpg",
        "content": "Butterfly",
        "maskImageUrl": MASK_URL,
    }


async def test_replace_bytes_without_urls_go_as_data_uris(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    image, mask = make_png(8, 6), make_png(8, 6, (255, 255, 255))
    await make_provider().submit(
        make_replace(image_url=None, image_bytes=image, mask_url=None, mask_bytes=mask)
    )
    [request] = recorder.requests
    body = json.loads(request.content)
    for key, data in (("imageUrl", image), ("maskImageUrl", mask)):
        prefix, _, payload = body[key].partition(",")
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(payload) == data


@pytest.mark.parametrize(
    "overrides",
    [
        {"prompt": None},
        {"prompt": ""},
        {"mask_url": None},
        {"image_url": None},
        {"options": {"content": "a cat"}},
        {"options": {"max_image_width": 1024}},
    ],
)
async def test_replace_without_its_inputs_is_rejected_without_a_request(
    make_provider: Callable[..., FotorProvider],
    recorder: Recorder,
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ProviderRejected) as info:
        await make_provider().submit(make_replace(**overrides))
    assert info.value.reason == "rejected_input"
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("status", "kwargs", "error", "reason"),
    [
        (
            200,
            {"json": {"code": "510", "msg": "No enough credits"}},
            ProviderRejected,
            "insufficient_credit",
        ),
        (
            200,
            {"json": {"code": "999", "msg": "unknown error"}},
            ProviderRejected,
            "provider_failed",
        ),
        (200, {"json": {"code": "000", "data": {}}}, ProviderUncertain, None),
        (
            400,
            {"json": {"code": "400", "msg": "content is required"}},
            ProviderRejected,
            "rejected_input",
        ),
        (401, {"json": {"code": "401", "msg": "bad key"}}, ProviderRejected, "provider_auth"),
        (429, {"headers": {"Retry-After": "9"}}, ProviderThrottled, None),
        (500, {}, ProviderUnavailable, None),
        (502, {}, ProviderUncertain, None),
    ],
)
async def test_replace_answers_mean_what_the_upscalers_mean(
    make_provider: Callable[..., FotorProvider],
    recorder: Recorder,
    status: int,
    kwargs: dict[str, Any],
    error: type[ProviderError],
    reason: str | None,
) -> None:
    recorder.answer = answering(status, **kwargs)
    with pytest.raises(ProviderError) as info:
        await make_provider().submit(make_replace())
    assert type(info.value) is error
    if reason is not None:
        assert isinstance(info.value, ProviderRejected)
        assert info.value.reason == reason
    if isinstance(info.value, ProviderThrottled):
        assert info.value.retry_after_s == 9.0
    [request] = recorder.requests
    assert request.url.path == "/v1/aiart/replacer"


async def test_replace_transport_timeout_is_uncertain(
    make_provider: Callable[..., FotorProvider], recorder: Recorder
) -> None:
    recorder.answer = raising(httpx.ReadTimeout)
    with pytest.raises(ProviderUncertain, match="may exist and be billed"):
        await make_provider().submit(make_replace())
