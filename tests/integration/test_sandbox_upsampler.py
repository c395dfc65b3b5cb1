"""The Upsampler sandbox, driven over ASGI and over real local HTTP servers.

All traffic stays on 127.0.0.1: a small receiver app serves input images and
collects webhooks, and real-server tests run the sandbox under uvicorn too.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette

from orchestrator.sandbox.app import create_sandbox_app
from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.imaging import upscale_image, upscale_image_variants
from orchestrator.sandbox.upsampler import UpsamplerSandbox
from tests.integration.provider_fixtures import (
    LOOPBACK,
    Receiver,
    asgi_sandbox,
    ctx_of,
    make_png,
    real_sandbox,
    receiving,
)

AUTH = {"Authorization": "Bearer test-key"}
API = "/upsampler/api/v1"


def image_size(data: bytes, fmt: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == fmt
        image.load()
        return image.size


# -- local servers --------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    images = {"in.png": make_png(16, 12), "junk.png": b"this is not an image"}
    async with receiving(images) as rec:
        yield rec


def jobs_of(app: Starlette) -> dict[str, Any]:
    ups = app.state.upsampler
    assert isinstance(ups, UpsamplerSandbox)
    return dict(ups.jobs)


def body(image_url: str, factor: Any = 2, webhook: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"input": {"imageUrl": image_url, "upscaleFactor": factor}}
    if webhook is not None:
        payload["webhook"] = webhook
    return payload


async def wait_final(
    client: httpx.AsyncClient, base: str, job_id: str, timeout: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"{base}{API}/status/{job_id}", headers=AUTH)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        if data["status"] in ("SUCCESS", "FAILED"):
            return data
        assert data["status"] in ("IN_QUEUE", "IN_PROGRESS")
        assert time.monotonic() < deadline, "job did not finish"
        await asyncio.sleep(0.01)


async def wait_status(client: httpx.AsyncClient, job_id: str) -> str:
    r = await client.get(f"{API}/status/{job_id}", headers=AUTH)
    assert set(r.json()) == {"id", "status"}
    status: str = r.json()["status"]
    return status


# -- imaging ---------------------------------------------------------------------


def test_upscale_image_doubles_size() -> None:
    assert image_size(upscale_image(make_png(16, 12), 2, 10_000), "PNG") == (32, 24)
    assert image_size(upscale_image(make_png(10, 10), 2.5, 10_000), "PNG") == (25, 25)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "1", "CMYK"])
def test_upscale_variants_handle_modes(mode: str) -> None:
    image = Image.new(mode, (8, 6))
    buf = io.BytesIO()
    image.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    out = upscale_image_variants(buf.getvalue(), 3, 10_000)
    assert (out.width, out.height) == (24, 18)
    assert image_size(out.png, "PNG") == (24, 18)
    assert image_size(out.jpeg, "JPEG") == (24, 18)


def test_upscale_rejects_non_images_and_big_outputs() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        upscale_image(b"definitely not an image", 2, 10_000)
    with pytest.raises(ValueError, match="too large"):
        upscale_image(make_png(100, 100), 2, 30_000)
    with pytest.raises(ValueError, match="positive"):
        upscale_image(make_png(4, 4), 0, 30_000)


# -- API over ASGI ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcg=="}],
)
async def test_submit_without_key_is_401(headers: dict[str, str]) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/precise-upscale", json=body("http://x/y"), headers=headers)
        assert r.status_code == 401
        assert r.json()["status"] == "FAILED"
        assert isinstance(r.json()["error"], str)
        r = await client.get(f"{API}/status/abc", headers=headers)
        assert r.status_code == 401
    assert jobs_of(app) == {}


async def test_specific_api_key_must_match(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK, api_key="secret")
    async with asgi_sandbox(app) as client:
        url = f"{API}/smart-upscale"
        r = await client.post(url, json=body(receiver.image_url()), headers=AUTH)
        assert r.status_code == 401
        good = {"Authorization": "Bearer secret"}
        r = await client.post(url, json=body(receiver.image_url()), headers=good)
        assert r.status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "factor"),
    [
        ("smart-upscale", 5),
        ("dynamic-upscale", 4.01),
        ("smart-upscale", 0.5),
        ("precise-upscale", 17),
        ("precise-upscale", 0),
        ("precise-upscale", "2"),
        ("precise-upscale", True),
        ("precise-upscale", None),
    ],
)
async def test_bad_factor_is_400(endpoint: str, factor: Any) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/{endpoint}", json=body("http://x/y", factor), headers=AUTH)
        assert r.status_code == 400
        assert r.json()["status"] == "FAILED"
        assert "upscaleFactor" in r.json()["error"]
    assert jobs_of(app) == {}


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"input": "x"}',
        b'{"input": {"upscaleFactor": 2}}',
        b'{"input": {"imageUrl": "ftp://x/y.png"}}',
        b'{"webhook": 5, "input": {"imageUrl": "http://x/y.png"}}',
    ],
)
async def test_malformed_submit_is_400(content: bytes) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/precise-upscale", content=content, headers=AUTH)
        assert r.status_code == 400
        assert r.json()["status"] == "FAILED"
        stats = (await client.get("/stats")).json()["upsampler"]
        assert stats["submits"] == 1
        assert stats["jobs_created"] == 0


async def test_factor_limits_are_inclusive(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        for endpoint, factor in [
            ("smart-upscale", 4),
            ("precise-upscale", 16),
            ("dynamic-upscale", 1),
        ]:
            r = await client.post(
                f"{API}/{endpoint}", json=body(receiver.image_url(), factor), headers=AUTH
            )
            assert r.status_code == 200, r.text


async def test_status_of_unknown_job_is_404() -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.get(f"{API}/status/000000000000", headers=AUTH)
        assert r.status_code == 404
        assert r.json() == {"status": "FAILED", "error": "job not found"}


@pytest.mark.parametrize(("retry_after_s", "header"), [(1.0, "1"), (2.5, "2.5")])
async def test_submit_429_has_retry_after_and_creates_nothing(
    retry_after_s: float, header: str
) -> None:
    app = create_sandbox_app(
        allow=LOOPBACK, faults=Faults(submit_429=1, retry_after_s=retry_after_s)
    )
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/precise-upscale", json=body("http://x/y"), headers=AUTH)
        assert r.status_code == 429
        assert r.headers["retry-after"] == header
        assert r.json()["status"] == "FAILED"
        stats = (await client.get("/stats")).json()["upsampler"]
    assert stats["submits"] == 1
    assert stats["jobs_created"] == 0
    assert jobs_of(app) == {}


async def test_submit_500_creates_nothing() -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(submit_500=1))
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/smart-upscale", json=body("http://x/y"), headers=AUTH)
        assert r.status_code == 500
        assert r.json()["status"] == "FAILED"
    assert jobs_of(app) == {}


async def test_status_faults(receiver: Receiver) -> None:
    faults = Faults()
    app = create_sandbox_app(allow=LOOPBACK, faults=faults)
    async with asgi_sandbox(app) as client:
        r = await client.post(
            f"{API}/precise-upscale", json=body(receiver.image_url()), headers=AUTH
        )
        job_id = r.json()["id"]
        faults.update({"status_429": 1, "retry_after_s": 3})
        r = await client.get(f"{API}/status/{job_id}", headers=AUTH)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "3"
        faults.update({"status_429": 0, "status_500": 1})
        r = await client.get(f"{API}/status/{job_id}", headers=AUTH)
        assert r.status_code == 500
        faults.update({"status_500": 0})
        assert (await wait_final(client, "", job_id))["status"] == "SUCCESS"


async def test_polling_flow_and_fresh_urls(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK, seed=1)
    async with asgi_sandbox(app) as client:
        r = await client.post(
            f"{API}/precise-upscale", json=body(receiver.image_url(), 2), headers=AUTH
        )
        assert r.status_code == 200
        answer = r.json()
        assert set(answer) == {"id", "status", "creditCost"}
        assert answer["status"] == "IN_QUEUE"
        assert len(answer["id"]) >= 12
        int(answer["id"], 16)
        first = await wait_final(client, "", answer["id"])
        second = await wait_final(client, "", answer["id"])
        assert set(first) == {"id", "status", "imageUrl", "compressedImageUrl", "creditCost"}
        assert first["id"] == answer["id"]
        assert first["creditCost"] == 1
        assert first["imageUrl"].startswith("http://sandbox.test/upsampler/results/")
        assert first["imageUrl"].endswith(".png")
        assert first["compressedImageUrl"].endswith(".jpg")
        assert first["imageUrl"] != second["imageUrl"]
        for data in (first, second):
            png = await client.get(data["imageUrl"])
            assert png.status_code == 200
            assert png.headers["content-type"] == "image/png"
            assert image_size(png.content, "PNG") == (32, 24)
            jpg = await client.get(data["compressedImageUrl"])
            assert jpg.headers["content-type"] == "image/jpeg"
            assert image_size(jpg.content, "JPEG") == (32, 24)
        assert (await client.get(first["imageUrl"][:-4] + ".jpg")).status_code == 404
        assert (await client.get("/upsampler/results/nope.png")).status_code == 404
        stats = (await client.get("/stats")).json()["upsampler"]
    assert stats["jobs_created"] == 1
    assert stats["results_served"] == 4
    assert stats["callbacks_sent"] == 0


async def test_credit_cost_follows_output_size(receiver: Receiver) -> None:
    receiver.images["big.png"] = make_png(1000, 1000)
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        costs = {}
        for endpoint in ("smart-upscale", "precise-upscale"):
            r = await client.post(
                f"{API}/{endpoint}", json=body(receiver.image_url("big.png"), 3), headers=AUTH
            )
            costs[endpoint] = (await wait_final(client, "", r.json()["id"]))["creditCost"]
    assert costs == {"smart-upscale": 9, "precise-upscale": 2}


@pytest.mark.parametrize(
    ("name", "needle"),
    [("missing.png", "Failed to download input image"), ("junk.png", "not a readable image")],
)
async def test_unusable_input_fails_the_job(receiver: Receiver, name: str, needle: str) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.post(
            f"{API}/smart-upscale", json=body(receiver.image_url(name)), headers=AUTH
        )
        assert r.status_code == 200
        final = await wait_final(client, "", r.json()["id"])
    assert set(final) == {"id", "status", "error"}
    assert final["status"] == "FAILED"
    assert needle in final["error"]


async def test_too_large_output_fails_the_job(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK, max_output_pixels=500)
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/smart-upscale", json=body(receiver.image_url()), headers=AUTH)
        final = await wait_final(client, "", r.json()["id"])
    assert final["status"] == "FAILED"
    assert "too large" in final["error"]


async def test_expired_result_is_410(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(expire_result=1))
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/smart-upscale", json=body(receiver.image_url()), headers=AUTH)
        final = await wait_final(client, "", r.json()["id"])
        assert (await client.get(final["imageUrl"])).status_code == 410
        assert (await client.get(final["compressedImageUrl"])).status_code == 410
        assert (await client.get("/stats")).json()["upsampler"]["results_expired"] == 2


async def test_result_urls_expire_after_three_hours(receiver: Receiver) -> None:
    now = [1000.0]
    app = create_sandbox_app(allow=LOOPBACK, clock=lambda: now[0])
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/smart-upscale", json=body(receiver.image_url()), headers=AUTH)
        final = await wait_final(client, "", r.json()["id"])
        now[0] += 3 * 3600 - 1
        assert (await client.get(final["imageUrl"])).status_code == 200
        now[0] += 1
        assert (await client.get(final["imageUrl"])).status_code == 410
        fresh = await wait_final(client, "", final["id"])
        assert (await client.get(fresh["imageUrl"])).status_code == 200


async def test_corrupt_result_is_not_an_image(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(corrupt_result=1), seed=3)
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/smart-upscale", json=body(receiver.image_url()), headers=AUTH)
        final = await wait_final(client, "", r.json()["id"])
        got = await client.get(final["imageUrl"])
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    with pytest.raises(OSError):
        Image.open(io.BytesIO(got.content))


async def test_result_base_url_points_elsewhere(receiver: Receiver) -> None:
    app = create_sandbox_app(
        allow=LOOPBACK, faults=Faults(result_base_url="http://169.254.169.254/x/")
    )
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/smart-upscale", json=body(receiver.image_url()), headers=AUTH)
        final = await wait_final(client, "", r.json()["id"])
    assert final["imageUrl"].startswith("http://169.254.169.254/x/upsampler/results/")


async def test_faults_and_stats_endpoints() -> None:
    faults = Faults()
    app = create_sandbox_app(allow=LOOPBACK, faults=faults)
    async with asgi_sandbox(app) as client:
        r = await client.get("/faults")
        assert r.status_code == 200
        assert r.json() == Faults().as_dict()
        r = await client.put("/faults", json={"drop_callback": 0.5, "processing_s": 2})
        assert r.status_code == 200
        assert r.json()["drop_callback"] == 0.5
        assert faults.processing_s == 2.0
        for bad in (b"{oops", b"[1]", b'{"drop_callback": 3}', b'{"nope": 1}'):
            r = await client.put("/faults", content=bad)
            assert r.status_code == 400
            assert r.json()["error"]
        assert faults.drop_callback == 0.5
        assert (await client.delete("/faults")).json() == Faults().as_dict()
        stats = (await client.get("/stats")).json()
        assert set(stats) == {"upsampler"}
        assert {
            "submits",
            "status_calls",
            "callbacks_sent",
            "callbacks_failed",
            "results_served",
            "jobs_created",
        } <= set(stats["upsampler"])
        assert not any(stats["upsampler"].values())


async def test_shutdown_cancels_background_jobs(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(processing_s=60))
    async with asgi_sandbox(app) as client:
        r = await client.post(f"{API}/smart-upscale", json=body(receiver.image_url()), headers=AUTH)
        assert r.status_code == 200
        assert ctx_of(app).pending_tasks == 1
        deadline = time.monotonic() + 5
        while (await wait_status(client, r.json()["id"])) != "IN_PROGRESS":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        started = time.monotonic()
    assert ctx_of(app).pending_tasks == 0
    assert time.monotonic() - started < 5


# -- webhooks over real HTTP -----------------------------------------------------


async def test_job_succeeds_and_callback_arrives(receiver: Receiver) -> None:
    async with real_sandbox(seed=5) as (base, _app, client):
        r = await client.post(
            f"{base}{API}/precise-upscale",
            json=body(receiver.image_url(), 2, webhook=receiver.hook_url),
            headers=AUTH,
        )
        assert r.status_code == 200
        job_id = r.json()["id"]
        [raw] = await receiver.wait_for(1)
        payload = httpx.Response(200, content=raw).json()
        assert set(payload) == {"id", "status", "imageUrl", "compressedImageUrl", "creditCost"}
        assert payload["id"] == job_id
        assert payload["status"] == "SUCCESS"
        assert payload["imageUrl"].startswith(f"{base}/upsampler/results/")
        png = await client.get(payload["imageUrl"])
        assert png.status_code == 200
        assert image_size(png.content, "PNG") == (32, 24)
        jpg = await client.get(payload["compressedImageUrl"])
        assert image_size(jpg.content, "JPEG") == (32, 24)
        status = await wait_final(client, base, job_id)
        assert status["status"] == "SUCCESS"
        stats = (await client.get(f"{base}/stats")).json()["upsampler"]
    assert stats["jobs_created"] == 1
    assert stats["callbacks_sent"] == 1
    assert stats["callbacks_failed"] == 0
    assert stats["results_served"] == 2


async def test_failed_job_callback(receiver: Receiver) -> None:
    async with real_sandbox() as (base, _app, client):
        await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url("junk.png"), webhook=receiver.hook_url),
            headers=AUTH,
        )
        [raw] = await receiver.wait_for(1)
    payload = httpx.Response(200, content=raw).json()
    assert payload["status"] == "FAILED"
    assert set(payload) == {"id", "status", "error"}


async def test_dropped_callback_is_never_sent(receiver: Receiver) -> None:
    async with real_sandbox(faults=Faults(drop_callback=1)) as (base, app, client):
        r = await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url(), webhook=receiver.hook_url),
            headers=AUTH,
        )
        assert (await wait_final(client, base, r.json()["id"]))["status"] == "SUCCESS"
        while ctx_of(app).pending_tasks:
            await asyncio.sleep(0.01)
        stats = (await client.get(f"{base}/stats")).json()["upsampler"]
    assert receiver.deliveries == []
    assert stats["callbacks_dropped"] == 1
    assert stats["callbacks_sent"] == 0


async def test_duplicate_callback_is_sent_twice(receiver: Receiver) -> None:
    async with real_sandbox(faults=Faults(duplicate_callback=1)) as (base, _app, client):
        await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url(), webhook=receiver.hook_url),
            headers=AUTH,
        )
        first, second = await receiver.wait_for(2)
        stats = (await client.get(f"{base}/stats")).json()["upsampler"]
    assert first == second
    assert stats["callbacks_sent"] == 2


async def test_callback_is_tried_three_times_with_backoff(receiver: Receiver) -> None:
    receiver.hook_codes = [500, 500, 500, 500]
    async with real_sandbox(callback_backoff_s=0.05) as (base, app, client):
        await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url(), webhook=receiver.hook_url),
            headers=AUTH,
        )
        await receiver.wait_for(3)
        while ctx_of(app).pending_tasks:
            await asyncio.sleep(0.01)
        stats = (await client.get(f"{base}/stats")).json()["upsampler"]
    assert len(receiver.deliveries) == 3
    (t1, _), (t2, _), (t3, _) = receiver.deliveries
    assert t2 - t1 >= 0.04
    assert t3 - t2 >= 0.09
    assert stats["callback_attempts"] == 3
    assert stats["callbacks_failed"] == 1
    assert stats["callbacks_sent"] == 0


async def test_callback_retry_succeeds_on_second_attempt(receiver: Receiver) -> None:
    receiver.hook_codes = [503]
    async with real_sandbox() as (base, app, client):
        await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url(), webhook=receiver.hook_url),
            headers=AUTH,
        )
        first, second = await receiver.wait_for(2)
        while ctx_of(app).pending_tasks:
            await asyncio.sleep(0.01)
        stats = (await client.get(f"{base}/stats")).json()["upsampler"]
    assert first == second
    assert stats["callbacks_sent"] == 1
    assert stats["callbacks_failed"] == 0


async def test_unreachable_webhook_counts_as_failed(receiver: Receiver) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    async with real_sandbox() as (base, app, client):
        await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url(), webhook=f"http://127.0.0.1:{closed_port}/hook"),
            headers=AUTH,
        )
        deadline = time.monotonic() + 5
        while ctx_of(app).stats.get("upsampler", "callbacks_failed") == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    assert ctx_of(app).stats.get("upsampler", "callback_attempts") == 3


async def test_delayed_callback(receiver: Receiver) -> None:
    async with real_sandbox(faults=Faults(delay_callback_s=0.3)) as (base, _app, client):
        started = time.monotonic()
        await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url(), webhook=receiver.hook_url),
            headers=AUTH,
        )
        await receiver.wait_for(1)
    assert receiver.deliveries[0][0] - started >= 0.3


async def test_early_callback_arrives_before_the_submit_answer(receiver: Receiver) -> None:
    faults = Faults(early_callback=1, processing_s=30)
    async with real_sandbox(faults=faults) as (base, _app, client):
        r = await client.post(
            f"{base}{API}/smart-upscale",
            json=body(receiver.image_url(), webhook=receiver.hook_url),
            headers=AUTH,
        )
        assert r.status_code == 200
        assert len(receiver.deliveries) == 1
        payload = httpx.Response(200, content=receiver.bodies[0]).json()
    assert payload["id"] == r.json()["id"]
    assert payload["status"] == "SUCCESS"


async def test_submit_timeout_still_creates_the_job(receiver: Receiver) -> None:
    faults = Faults(submit_timeout=1, submit_timeout_s=30)
    async with real_sandbox(faults=faults) as (base, app, client):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"{base}{API}/precise-upscale",
                json=body(receiver.image_url(), webhook=receiver.hook_url),
                headers=AUTH,
                timeout=0.3,
            )
        [raw] = await receiver.wait_for(1)
        stats = (await client.get(f"{base}/stats")).json()["upsampler"]
        started = time.monotonic()
    # The hanging submit handler noticed the disconnect: shutdown was quick.
    assert time.monotonic() - started < 5
    assert httpx.Response(200, content=raw).json()["status"] == "SUCCESS"
    assert stats["jobs_created"] == 1
    assert stats["submits_timed_out"] == 1
    assert len(jobs_of(app)) == 1


async def test_standalone_control_endpoints(receiver: Receiver) -> None:
    async with real_sandbox() as (base, _app, client):
        r = await client.put(f"{base}/faults", json={"submit_500": 1})
        assert r.status_code == 200
        r = await client.post(
            f"{base}{API}/smart-upscale", json=body(receiver.image_url()), headers=AUTH
        )
        assert r.status_code == 500
        assert (await client.get(f"{base}/faults")).json()["submit_500"] == 1
        assert (await client.get(f"{base}/stats")).json()["upsampler"]["submits"] == 1


async def test_one_providers_own_faults_leave_the_others_alone() -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.put("/faults/upsampler", json={"no_credit": 1})
        assert r.status_code == 200 and r.json()["no_credit"] == 1
        r = await client.post(f"{API}/precise-upscale", json=body("http://x/y"), headers=AUTH)
        assert r.status_code == 403  # Upsampler's answer when the credits ran out
        assert (await client.get("/faults")).json()["no_credit"] == 0  # shared ones unchanged
        assert (await client.put("/faults/nope", json={})).status_code == 404
        assert (await client.put("/faults/fotor", json={"nope": 1})).status_code == 400
        assert (await client.put("/faults/fotor", content=b"{")).status_code == 400
        await client.delete("/faults")
        r = await client.post(f"{API}/precise-upscale", json=body("http://x/y"), headers=AUTH)
        assert r.status_code == 200
