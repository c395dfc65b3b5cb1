"""The Photio and Artnex sandboxes over ASGI (lifespan running), raw and through the adapters.

The adapters are the production ones with only ``base_url`` pointed at the
sandbox. Input images given by URL are served by a small app under uvicorn on
127.0.0.1; nothing else leaves the process.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from orchestrator.providers.artnex import ArtnexProvider
from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.photio import PhotioProvider
from orchestrator.providers.registry import SANDBOX_PATHS
from orchestrator.sandbox.artnex import ArtnexSandbox
from orchestrator.sandbox.faults import Faults
from schemas.errors import (
    ProviderRejected,
    ProviderThrottled,
    ProviderUncertain,
)
from schemas.jobs import UpdateStatus
from tests.integration.provider_fixtures import (
    SANDBOX_HOST,
    Receiver,
    make_png,
    receiving,
    sandbox_adapter,
    sandbox_over_asgi,
)

ARTNEX = f"{SANDBOX_HOST}{SANDBOX_PATHS['artnex']}"
PHOTIO_AUTH = {"X-Photio-Key": "pt-test"}
ARTNEX_AUTH = {"Authorization": "Bearer ax-test"}
DAY = 24 * 3600.0

PNG = make_png(16, 12)
B64 = base64.b64encode(PNG).decode()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def encoded(fmt: str, size: tuple[int, int] = (16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (50, 100, 150)).save(buf, format=fmt)
    return buf.getvalue()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


INPUTS = {
    "in.png": PNG,
    "in.jpg": encoded("JPEG"),
    "in.gif": encoded("GIF"),
    "wide.png": make_png(1200, 800),
    "huge.png": make_png(4, 4) + bytes(10_000_001),
    "junk.png": b"this is not an image",
}


@pytest.fixture
async def inputs() -> AsyncIterator[Receiver]:
    """Serves input images by name on 127.0.0.1 (as bytes of no stated type)."""
    async with receiving(INPUTS, media_type="application/octet-stream") as server:
        yield server


def photio(client: httpx.AsyncClient, **kwargs: Any) -> PhotioProvider:
    return sandbox_adapter(PhotioProvider, client, **kwargs)


def artnex(client: httpx.AsyncClient, **kwargs: Any) -> ArtnexProvider:
    return sandbox_adapter(ArtnexProvider, client, **kwargs)


def job(scale: float = 2.0, *, url: str | None = None, data: bytes | None = PNG) -> SubmitRequest:
    if url is not None:
        data = None
    return SubmitRequest("job-1", scale, {}, image_url=url, image_bytes=data)


async def stats(client: httpx.AsyncClient, provider: str) -> dict[str, int]:
    all_stats: dict[str, dict[str, int]] = (await client.get("/sandbox/stats")).json()
    return all_stats[provider]


# --- Photio ----------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "expected"), [(2.0, (32, 24)), (4.0, (64, 48))])
async def test_photio_adapter_end_to_end(scale: float, expected: tuple[int, int]) -> None:
    async with sandbox_over_asgi() as (_app, client):
        accepted = await photio(client).submit(job(scale))
        counters = await stats(client, "photio")
    update = accepted.update
    assert update is not None
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_bytes is not None
    assert size_of(update.result_bytes) == expected
    assert accepted.provider_job_id.startswith("photio-")
    assert counters["submits"] == 1
    assert counters["jobs_created"] == 1


async def test_photio_url_input_and_options(inputs: Receiver) -> None:
    async with sandbox_over_asgi() as (_app, client):
        request = SubmitRequest(
            "job-1",
            2.0,
            {"quality": "HIGH", "prompt": "sharp", "denoising_strength": 0.3},
            image_url=inputs("in.jpg"),
        )
        accepted = await photio(client).submit(request)
        counters = await stats(client, "photio")
    assert accepted.update is not None and accepted.update.result_bytes is not None
    assert size_of(accepted.update.result_bytes) == (32, 24)
    assert counters["inputs_fetched"] == 1


async def test_photio_output_is_capped_at_4k(inputs: Receiver) -> None:
    async with sandbox_over_asgi() as (_app, client):
        accepted = await photio(client).submit(job(4.0, url=inputs("wide.png")))
        assert accepted.update is not None and accepted.update.result_bytes is not None
        assert size_of(accepted.update.result_bytes) == (4096, 2731)
        r = await client.post(
            "/sandbox/photio/v1/inference/upscale",
            json={"image": base64.b64encode(make_png(5000, 10)).decode()},
            headers=PHOTIO_AUTH,
        )
    assert r.status_code == 400
    assert "4096" in r.json()["body"]


@pytest.mark.parametrize("headers", [{}, {"X-Photio-Key": ""}, {"Authorization": "Bearer x"}])
async def test_photio_needs_its_key_header(headers: dict[str, str]) -> None:
    async with sandbox_over_asgi() as (_app, client):
        r = await client.post(
            "/sandbox/photio/v1/inference/upscale", json={"image": B64}, headers=headers
        )
        assert r.status_code == 401
        assert r.json()["status_code"] == 401
        assert (await stats(client, "photio"))["unauthorized"] == 1


async def test_photio_specific_key_must_match() -> None:
    async with sandbox_over_asgi(api_key="pt-right") as (_app, client):
        with pytest.raises(ProviderRejected) as info:
            await photio(client, api_key="pt-wrong").submit(job())
        assert info.value.reason == "provider_auth"
        accepted = await photio(client, api_key="pt-right").submit(job())
    assert accepted.update is not None


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({}, "image is required"),
        ({"image": ""}, "image is required"),
        ({"image": 5}, "image is required"),
        ({"image": B64, "upscale_by": 3}, "upscale_by"),
        ({"image": B64, "upscale_by": True}, "upscale_by"),
        ({"image": B64, "quality": "low"}, "quality"),
        ({"image": B64, "denoising_strength": 2}, "denoising_strength"),
        ({"image": B64, "prompt": 1}, "prompt"),
        ({"image": "not base64 at all!"}, "base64"),
        ({"image": "data:image/png," + B64}, "base64"),
        ({"image": base64.b64encode(b"junk").decode()}, "not a readable image"),
    ],
)
async def test_photio_bad_requests_are_400(payload: dict[str, Any], needle: str) -> None:
    async with sandbox_over_asgi() as (_app, client):
        r = await client.post(
            "/sandbox/photio/v1/inference/upscale", json=payload, headers=PHOTIO_AUTH
        )
    assert r.status_code == 400
    assert r.json()["status_code"] == 400
    assert needle in r.json()["body"]


async def test_photio_non_json_and_unreachable_inputs(inputs: Receiver) -> None:
    async with sandbox_over_asgi() as (_app, client):
        r = await client.post(
            "/sandbox/photio/v1/inference/upscale", content=b"{oops", headers=PHOTIO_AUTH
        )
        assert r.status_code == 400
        for name, needle in [
            ("missing.png", "could not be fetched"),
            ("junk.png", "not a readable image"),
        ]:
            with pytest.raises(ProviderRejected, match=needle) as info:
                await photio(client).submit(job(url=inputs(name)))
            assert info.value.reason == "rejected_input"
        counters = await stats(client, "photio")
    assert counters["jobs_created"] == 0
    assert counters["jobs_failed"] == 2


async def test_photio_submit_429() -> None:
    async with sandbox_over_asgi(faults=Faults(submit_429=1, retry_after_s=7)) as (_app, client):
        r = await client.post(
            "/sandbox/photio/v1/inference/upscale", json={"image": B64}, headers=PHOTIO_AUTH
        )
        assert r.status_code == 429
        assert r.headers["retry-after"] == "7"
        assert r.json()["status_code"] == 429
        with pytest.raises(ProviderThrottled) as info:
            await photio(client).submit(job())
        counters = await stats(client, "photio")
    assert info.value.retry_after_s == 7.0
    assert counters["submits_throttled"] == 2
    assert counters["jobs_created"] == 0


async def test_photio_submit_500_is_final() -> None:
    async with sandbox_over_asgi(faults=Faults(submit_500=1)) as (_app, client):
        with pytest.raises(ProviderRejected) as info:
            await photio(client).submit(job())
    assert info.value.reason == "provider_failed"
    assert not info.value.retryable


async def test_photio_status_in_body() -> None:
    async with sandbox_over_asgi(faults=Faults(status_in_body=1)) as (_app, client):
        r = await client.post(
            "/sandbox/photio/v1/inference/upscale", json={"image": B64}, headers=PHOTIO_AUTH
        )
        assert r.status_code == 200
        assert r.json() == {"status_code": 500, "body": ""}
        with pytest.raises(ProviderRejected, match="status_code 500") as info:
            await photio(client).submit(job())
        assert (await stats(client, "photio"))["status_in_body"] == 2
    assert info.value.reason == "provider_failed"


async def test_photio_data_uri_body() -> None:
    async with sandbox_over_asgi(faults=Faults(data_uri_body=1)) as (_app, client):
        r = await client.post(
            "/sandbox/photio/v1/inference/upscale", json={"image": B64}, headers=PHOTIO_AUTH
        )
        assert r.json()["body"].startswith("data:image/png;base64,iVBOR")
        accepted = await photio(client).submit(job())
    assert accepted.update is not None and accepted.update.result_bytes is not None
    assert size_of(accepted.update.result_bytes) == (32, 24)


async def test_photio_corrupt_result_is_result_invalid() -> None:
    async with sandbox_over_asgi(faults=Faults(corrupt_result=1), seed=4) as (_app, client):
        with pytest.raises(ProviderRejected) as info:
            await photio(client).submit(job())
        assert (await stats(client, "photio"))["results_corrupt"] == 1
    assert info.value.reason == "result_invalid"
    assert "billed" in info.value.message


async def test_photio_processing_time() -> None:
    async with sandbox_over_asgi(faults=Faults(processing_s=0.3)) as (_app, client):
        started = time.monotonic()
        await photio(client).submit(job())
    assert time.monotonic() - started >= 0.3


async def test_photio_submit_timeout_is_uncertain_but_billed() -> None:
    faults = Faults(submit_timeout=1, submit_timeout_s=30)
    async with sandbox_over_asgi(faults=faults) as (_app, client):
        started = time.monotonic()
        with pytest.raises(ProviderUncertain, match="may have been billed"):
            await photio(client, submit_timeout_s=0.5).submit(job())
        assert time.monotonic() - started < 5
        counters = await stats(client, "photio")
    assert counters["jobs_created"] == 1
    assert counters["submits_timed_out"] == 1


# --- Artnex ----------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "expected"), [(2.0, (32, 24)), (4.0, (64, 48)), (3.0, (48, 36))])
async def test_artnex_adapter_end_to_end(scale: float, expected: tuple[int, int]) -> None:
    async with sandbox_over_asgi(seed=2) as (_app, client):
        accepted = await artnex(client).submit(job(scale))
        update = accepted.update
        assert update is not None and update.result_url is not None
        assert update.result_url.startswith(f"{ARTNEX}/results/")
        got = await client.get(update.result_url)
        counters = await stats(client, "artnex")
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    assert size_of(got.content) == expected
    assert accepted.provider_job_id.startswith("req_ups_")
    assert accepted.cost == 100.0
    assert update.status is UpdateStatus.SUCCEEDED
    assert counters["jobs_created"] == 1
    assert counters["results_served"] == 1


async def test_artnex_url_input(inputs: Receiver) -> None:
    async with sandbox_over_asgi() as (_app, client):
        accepted = await artnex(client).submit(job(url=inputs("in.jpg")))
        assert accepted.update is not None and accepted.update.result_url is not None
        got = await client.get(accepted.update.result_url)
        assert (await stats(client, "artnex"))["inputs_fetched"] == 1
    assert size_of(got.content) == (32, 24)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic eDp5"}, PHOTIO_AUTH]
)
async def test_artnex_needs_a_bearer_key(headers: dict[str, str]) -> None:
    async with sandbox_over_asgi() as (_app, client):
        r = await client.post(
            "/sandbox/artnex/v1/upscale", json={"image": "https://x/y.png"}, headers=headers
        )
    assert r.status_code == 401
    assert r.json()["success"] is False
    assert r.json()["error"] == "invalid_api_key"
    assert isinstance(r.json()["message"], str)


async def test_artnex_specific_key_must_match() -> None:
    async with sandbox_over_asgi(api_key="ax-right") as (_app, client):
        with pytest.raises(ProviderRejected) as info:
            await artnex(client).submit(job())
        assert info.value.reason == "provider_auth"
        assert (await artnex(client, api_key="ax-right").submit(job())).update is not None


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "missing_image"),
        ({"image": ""}, "missing_image"),
        ({"image": None}, "missing_image"),
        ({"image": 7}, "invalid_image_format"),
        ({"image": B64}, "invalid_image_format"),  # bare base64: the prefix is required
        ({"image": "ftp://x/y.png"}, "invalid_image_format"),
        ({"image": "data:image/gif;base64," + B64}, "invalid_image_format"),
        ({"image": "data:image/png;base64,@@@@"}, "invalid_image_format"),
        (
            {"image": "data:image/png;base64," + base64.b64encode(encoded("GIF")).decode()},
            "invalid_image_format",
        ),
        (
            {"image": "data:image/png;base64," + base64.b64encode(bytes(10_000_001)).decode()},
            "image_too_large",
        ),
        ({"image": "data:image/png;base64," + B64, "scale": 5}, "invalid_scale"),
        ({"image": "data:image/png;base64," + B64, "scale": 0}, "invalid_scale"),
        ({"image": "data:image/png;base64," + B64, "scale": "2"}, "invalid_scale"),
        ({"image": "data:image/png;base64," + B64, "scale": True}, "invalid_scale"),
    ],
)
async def test_artnex_validation_codes(payload: dict[str, Any], code: str) -> None:
    async with sandbox_over_asgi() as (_app, client):
        r = await client.post("/sandbox/artnex/v1/upscale", json=payload, headers=ARTNEX_AUTH)
        counters = await stats(client, "artnex")
    assert r.status_code == 400
    assert r.json()["success"] is False
    assert r.json()["error"] == code
    assert r.json()["message"]
    assert counters["jobs_created"] == 0


async def test_artnex_non_json_body() -> None:
    async with sandbox_over_asgi() as (_app, client):
        for content in (b"{oops", b"[1]"):
            r = await client.post(
                "/sandbox/artnex/v1/upscale", content=content, headers=ARTNEX_AUTH
            )
            assert r.status_code == 400
            assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("missing.png", "invalid_image_format"),
        ("junk.png", "invalid_image_format"),
        ("in.gif", "invalid_image_format"),
        ("huge.png", "image_too_large"),
    ],
)
async def test_artnex_unusable_url_inputs(inputs: Receiver, name: str, code: str) -> None:
    async with sandbox_over_asgi() as (_app, client):
        r = await client.post(
            "/sandbox/artnex/v1/upscale", json={"image": inputs(name)}, headers=ARTNEX_AUTH
        )
        assert r.status_code == 400
        assert r.json()["error"] == code
        with pytest.raises(ProviderRejected) as info:
            await artnex(client).submit(job(url=inputs(name)))
    assert info.value.reason == "rejected_input"
    assert code in info.value.message


async def test_artnex_results_expire_after_24_hours() -> None:
    clock = Clock()
    async with sandbox_over_asgi(clock=clock) as (_app, client):
        accepted = await artnex(client).submit(job())
        assert accepted.update is not None and accepted.update.result_url is not None
        url = accepted.update.result_url
        clock.now += 3 * 3600  # outlives the Upsampler's 3 h
        assert (await client.get(url)).status_code == 200
        clock.now += DAY - 3 * 3600 - 1
        assert (await client.get(url)).status_code == 200
        clock.now += 1
        r = await client.get(url)
        assert r.status_code == 410
        assert (await stats(client, "artnex"))["results_expired"] == 1
        with pytest.raises(ProviderRejected, match="cannot be refreshed"):
            await artnex(client).poll(accepted.provider_job_id)


async def test_artnex_submit_429() -> None:
    async with sandbox_over_asgi(faults=Faults(submit_429=1, retry_after_s=12)) as (_app, client):
        r = await client.post(
            "/sandbox/artnex/v1/upscale", json={"image": "https://x/y"}, headers=ARTNEX_AUTH
        )
        assert r.status_code == 429
        assert r.headers["retry-after"] == "12"
        assert r.json()["error"] == "rate_limit_exceeded"
        with pytest.raises(ProviderThrottled) as info:
            await artnex(client).submit(job())
    assert info.value.retry_after_s == 12.0


async def test_artnex_no_credit() -> None:
    async with sandbox_over_asgi(faults=Faults(no_credit=1)) as (_app, client):
        r = await client.post(
            "/sandbox/artnex/v1/upscale", json={"image": "https://x/y"}, headers=ARTNEX_AUTH
        )
        assert r.status_code == 402
        assert r.json()["error"] == "insufficient_credits"
        with pytest.raises(ProviderRejected) as info:
            await artnex(client).submit(job())
        assert (await stats(client, "artnex"))["no_credit"] == 2
    assert info.value.reason == "insufficient_credit"


async def test_artnex_submit_500_is_final() -> None:
    async with sandbox_over_asgi(faults=Faults(submit_500=1)) as (_app, client):
        with pytest.raises(ProviderRejected) as info:
            await artnex(client).submit(job())
        assert (await stats(client, "artnex"))["jobs_created"] == 0
    assert info.value.reason == "provider_failed"


async def test_artnex_expire_result() -> None:
    async with sandbox_over_asgi(faults=Faults(expire_result=1)) as (_app, client):
        accepted = await artnex(client).submit(job())
        assert accepted.update is not None and accepted.update.result_url is not None
        assert (await client.get(accepted.update.result_url)).status_code == 410


async def test_artnex_corrupt_result() -> None:
    async with sandbox_over_asgi(faults=Faults(corrupt_result=1), seed=9) as (_app, client):
        accepted = await artnex(client).submit(job())
        assert accepted.update is not None and accepted.update.result_url is not None
        got = await client.get(accepted.update.result_url)
        assert (await stats(client, "artnex"))["results_corrupt"] == 1
    assert got.status_code == 200
    with pytest.raises(OSError):
        Image.open(io.BytesIO(got.content))


async def test_artnex_result_base_url() -> None:
    async with sandbox_over_asgi(faults=Faults(result_base_url="http://cdn.test/x/")) as (
        _app,
        client,
    ):
        accepted = await artnex(client).submit(job())
    assert accepted.update is not None and accepted.update.result_url is not None
    assert accepted.update.result_url.startswith("http://cdn.test/x/artnex/results/")


async def test_artnex_processing_time() -> None:
    async with sandbox_over_asgi(faults=Faults(processing_s=0.3)) as (_app, client):
        started = time.monotonic()
        await artnex(client).submit(job())
    assert time.monotonic() - started >= 0.3


async def test_artnex_submit_timeout_is_uncertain_but_billed() -> None:
    faults = Faults(submit_timeout=1, submit_timeout_s=30, quota_per_day=1)
    async with sandbox_over_asgi(faults=faults) as (_app, client):
        started = time.monotonic()
        with pytest.raises(ProviderUncertain, match="may have been billed"):
            await artnex(client, submit_timeout_s=0.5).submit(job())
        assert time.monotonic() - started < 5
        counters = await stats(client, "artnex")
        # the lost call used up the day's only upscale
        faults.update({"submit_timeout": 0})
        with pytest.raises(ProviderThrottled):
            await artnex(client).submit(job())
    assert counters["jobs_created"] == 1
    assert counters["submits_timed_out"] == 1


async def test_artnex_daily_quota_rolls_over_24_hours() -> None:
    clock = Clock()
    async with sandbox_over_asgi(faults=Faults(quota_per_day=2), clock=clock) as (app, client):
        provider = artnex(client)
        await provider.submit(job())
        clock.now += 3600
        await provider.submit(job())
        # a refused request does not count
        with pytest.raises(ProviderRejected):
            await provider.submit(job(8.0))
        r = await client.post(
            "/sandbox/artnex/v1/upscale",
            json={"image": "data:image/png;base64," + B64},
            headers=ARTNEX_AUTH,
        )
        assert r.status_code == 429
        assert r.json() == {
            "success": False,
            "error": "rate_limit_exceeded",
            "message": "You have exceeded your plan's daily request quota",
        }
        # the oldest upscale leaves the window 23 h from now
        assert r.headers["retry-after"] == str(int(DAY - 3600))
        with pytest.raises(ProviderThrottled, match="daily quota") as info:
            await provider.submit(job())
        assert info.value.retry_after_s == 3600.0  # at most an hour per attempt
        # the quota is per API key
        assert (await artnex(client, api_key="ax-other").submit(job())).update is not None
        # a rolling window: one slot frees when the first upscale is 24 h old
        clock.now += DAY - 3600
        await provider.submit(job())
        with pytest.raises(ProviderThrottled):
            await provider.submit(job())
        counters = await stats(client, "artnex")
        sandbox_state = app.state.artnex
        assert isinstance(sandbox_state, ArtnexSandbox)
        assert sandbox_state.quota_wait("ax-test") == 3600.0
    assert counters["quota_exceeded"] == 3
    assert counters["jobs_created"] == 4


async def test_artnex_lowering_the_quota_waits_for_the_newest_to_leave() -> None:
    clock = Clock()
    faults = Faults(quota_per_day=3)
    async with sandbox_over_asgi(faults=faults, clock=clock) as (app, client):
        for _ in range(3):
            await artnex(client).submit(job())
            clock.now += 3600
        faults.update({"quota_per_day": 1})
        r = await client.post(
            "/sandbox/artnex/v1/upscale",
            json={"image": "data:image/png;base64," + B64},
            headers=ARTNEX_AUTH,
        )
        # three in the window, one allowed: all three must leave, the last 23 h from now
        assert r.status_code == 429
        assert r.headers["retry-after"] == str(int(DAY - 3600))
        clock.now += DAY - 3600 - 1
        assert app.state.artnex.quota_wait("ax-test") == 1.0
        clock.now += 1
        assert app.state.artnex.quota_wait("ax-test") is None
        assert (await artnex(client).submit(job())).update is not None


async def test_artnex_zero_quota_is_unlimited() -> None:
    async with sandbox_over_asgi(faults=Faults(quota_per_day=0)) as (_app, client):
        results = await asyncio.gather(*(artnex(client).submit(job()) for _ in range(5)))
    assert len({accepted.provider_job_id for accepted in results}) == 5


# --- faults and stats ------------------------------------------------------------------


async def test_fault_settings_over_http() -> None:
    async with sandbox_over_asgi() as (app, client):
        r = await client.put(
            "/sandbox/faults",
            json={"quota_per_day": 3, "status_in_body": 0.5, "data_uri_body": 1, "no_credit": 0},
        )
        assert r.status_code == 200
        assert r.json()["quota_per_day"] == 3
        assert r.json()["status_in_body"] == 0.5
        for bad in ({"quota_per_day": 1.5}, {"quota_per_day": -1}, {"status_in_body": 2}):
            r = await client.put("/sandbox/faults", content=json.dumps(bad))
            assert r.status_code == 400, bad
        assert app.state.sandbox.faults.quota_per_day == 3
    assert Faults.parse("quota_per_day=100,data_uri_body=1").quota_per_day == 100
    with pytest.raises(ValueError, match="not a probability"):
        Faults().roll("quota_per_day", random.Random(0))


async def test_stats_appear_with_traffic_and_reset() -> None:
    async with sandbox_over_asgi() as (_app, client):
        before = (await client.get("/sandbox/stats")).json()
        assert "photio" not in before and "artnex" not in before
        await photio(client).submit(job())
        await artnex(client).submit(job())
        after = (await client.get("/sandbox/stats")).json()
        assert after["photio"]["submits"] == 1
        assert after["artnex"]["submits"] == 1
        assert after["artnex"]["quota_exceeded"] == 0
        reset = (await client.delete("/sandbox/stats")).json()
    assert not any(reset["photio"].values())
    assert not any(reset["artnex"].values())
