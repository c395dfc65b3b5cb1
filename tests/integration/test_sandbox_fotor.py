"""The Fotor sandbox, over ASGI and over real local HTTP servers.

All traffic stays on 127.0.0.1: a small receiver app serves input images and
collects webhooks, and real-server tests run the sandbox under uvicorn too. The
last tests drive the sandbox with the unmodified ``FotorProvider``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette

from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.fotor import FotorProvider
from orchestrator.sandbox.app import create_sandbox_app
from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.fotor import FotorSandbox
from orchestrator.sandbox.fotor_tasks import upscale_capped
from schemas.errors import (
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
)
from schemas.jobs import UpdateStatus
from tests.factories import make_png
from tests.integration.provider_fixtures import (
    LOOPBACK,
    SANDBOX_MOUNT,
    Receiver,
    asgi_sandbox,
    ctx_of,
    real_sandbox,
    receiving,
    sandbox_adapter,
    settle,
)

AUTH = {"Authorization": "Bearer test-key"}
API = "/fotor/v1"
SUBMIT = f"{API}/aiart/imgupscale"


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def body(image: str, factor: Any = 2, width: Any = 2048, height: Any = 2048) -> dict[str, Any]:
    return {
        "upscaling_resize": factor,
        "userImageUrl": image,
        "max_image_width": width,
        "max_image_height": height,
    }


PNG = make_png(16, 12)


# -- local servers --------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving({"in.png": PNG, "junk.png": b"not an image"}) as rec:
        yield rec


@asynccontextmanager
async def hooked_sandbox(
    hook: str | None = None, **options: Any
) -> AsyncIterator[tuple[str, Starlette, httpx.AsyncClient]]:
    """The standalone sandbox under uvicorn: yields (base URL incl. /sandbox, app, client).

    ``hook`` becomes the account webhook, set over HTTP like an operator would.
    """
    async with real_sandbox(**options) as (base, app, client):
        if hook is not None:
            r = await client.put(f"{base}/fotor/webhook", json={"url": hook})
            assert r.status_code == 200
        yield base, app, client


def fotor_of(app: Starlette) -> FotorSandbox:
    fot = app.state.fotor
    assert isinstance(fot, FotorSandbox)
    return fot


async def submit(client: httpx.AsyncClient, payload: dict[str, Any], base: str = "") -> str:
    r = await client.post(f"{base}{SUBMIT}", json=payload, headers=AUTH)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["code"] == "000"
    assert answer["msg"] == "success"
    task_id: str = answer["data"]["taskId"]
    return task_id


async def wait_final(
    client: httpx.AsyncClient, task_id: str, base: str = "", timeout: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"{base}{API}/aiart/tasks/{task_id}", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["code"] == "000"
        data: dict[str, Any] = r.json()["data"]
        if data["status"] != 0:
            return data
        assert time.monotonic() < deadline, "task did not finish"
        await asyncio.sleep(0.01)


async def credits(client: httpx.AsyncClient, base: str = "") -> dict[str, Any]:
    r = await client.get(f"{base}{API}/credits", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["code"] == "000"
    data: dict[str, Any] = r.json()["data"]
    return data


async def fotor_stats(client: httpx.AsyncClient, base: str = "") -> dict[str, int]:
    stats: dict[str, int] = (await client.get(f"{base}/stats")).json()["fotor"]
    return stats


# -- imaging ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "factor", "cap", "expected"),
    [
        ((16, 12), 2, (2048, 2048), (32, 24)),
        ((16, 12), 4, (40, 2048), (40, 30)),
        ((16, 12), 4, (2048, 24), (32, 24)),
        ((100, 50), 2, (64, 64), (64, 32)),  # larger than the cap: scaled down to fit
    ],
)
def test_upscale_capped(
    size: tuple[int, int], factor: float, cap: tuple[int, int], expected: tuple[int, int]
) -> None:
    png, width, height = upscale_capped(make_png(*size), factor, *cap, 10_000_000)
    assert (width, height) == expected
    assert image_size(png) == expected


def test_upscale_capped_rejects_junk() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        upscale_capped(b"junk", 2, 100, 100, 10_000)


# -- API over ASGI ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcg=="}]
)
async def test_requests_without_key_are_401(headers: dict[str, str]) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        for method, path in [
            ("POST", SUBMIT),
            ("GET", f"{API}/aiart/tasks/abc"),
            ("GET", f"{API}/credits"),
        ]:
            r = await client.request(method, path, json=body(data_uri(PNG)), headers=headers)
            assert r.status_code == 401, path
            assert r.json()["code"] == "401"
            assert r.json()["data"] is None
            assert isinstance(r.json()["msg"], str)
        assert (await fotor_stats(client))["unauthorized"] == 3
    assert fotor_of(app).tasks == {}


async def test_specific_api_key_must_match() -> None:
    app = create_sandbox_app(allow=LOOPBACK, api_key="secret")
    async with asgi_sandbox(app) as client:
        r = await client.post(SUBMIT, json=body(data_uri(PNG)), headers=AUTH)
        assert r.status_code == 401
        good = {"Authorization": "Bearer secret"}
        r = await client.post(SUBMIT, json=body(data_uri(PNG)), headers=good)
        assert r.status_code == 200
        assert r.json()["code"] == "000"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (body(data_uri(PNG), factor=5), "upscaling_resize"),
        (body(data_uri(PNG), factor=0.5), "upscaling_resize"),
        (body(data_uri(PNG), factor="2"), "upscaling_resize"),
        (body(data_uri(PNG), factor=True), "upscaling_resize"),
        (body(data_uri(PNG), width=None), "max_image_width"),
        (body(data_uri(PNG), height=0), "max_image_height"),
        (body(data_uri(PNG), width=9000), "max_image_width"),
        (body(""), "userImageUrl"),
        (body("ftp://x/y.png"), "userImageUrl"),
        (body("data:image/png,notbase64"), "base64"),
        (body("data:image/png;base64,!!!"), "userImageUrl"),
        ({"upscaling_resize": 2}, "userImageUrl"),
    ],
)
async def test_malformed_submit_is_400(payload: dict[str, Any], needle: str) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.post(SUBMIT, json=payload, headers=AUTH)
        assert r.status_code == 400
        assert r.json()["code"] == "400"
        assert needle in r.json()["msg"]
        stats = await fotor_stats(client)
    assert (stats["submits"], stats["submits_rejected"], stats["jobs_created"]) == (1, 1, 0)


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'"x"'])
async def test_non_object_submit_is_400(content: bytes) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.post(SUBMIT, content=content, headers=AUTH)
        assert r.status_code == 400
        assert r.json()["code"] == "400"


async def test_polling_flow_with_base64_input() -> None:
    app = create_sandbox_app(allow=LOOPBACK, seed=1)
    before_ms = int(time.time() * 1000)
    async with asgi_sandbox(app) as client:
        task_id = await submit(client, body(data_uri(PNG), factor=4, width=40))
        assert len(task_id) == 32
        int(task_id, 16)
        first = await wait_final(client, task_id)
        second = await wait_final(client, task_id)
        assert set(first) == {
            "taskId",
            "createTime",
            "updateTime",
            "status",
            "businessId",
            "type",
            "resultUrl",
            "hasHsfw",
            "creditsIncrement",
        }
        assert first["taskId"] == task_id
        assert first["status"] == 1
        assert first["hasHsfw"] is False
        assert first["creditsIncrement"] == 1
        assert before_ms <= first["createTime"] <= first["updateTime"] <= before_ms + 60_000
        assert first["resultUrl"].startswith("http://sandbox.test/fotor/results/")
        assert first["resultUrl"] != second["resultUrl"]  # minted fresh per answer
        for data in (first, second):
            got = await client.get(data["resultUrl"])
            assert got.status_code == 200
            assert got.headers["content-type"] == "image/png"
            assert image_size(got.content) == (40, 30)  # 4x capped at max_image_width
        assert (await client.get("/fotor/results/nope.png")).status_code == 404
        stats = await fotor_stats(client)
    assert stats["jobs_created"] == 1
    assert stats["jobs_succeeded"] == 1
    assert stats["results_served"] == 2
    assert stats["callbacks_sent"] == 0
    assert stats["callbacks_skipped"] == 2  # no webhook configured: progress + completion


async def test_bare_base64_and_url_inputs(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        bare = await submit(client, body(base64.b64encode(PNG).decode(), factor=2))
        url = await submit(client, body(receiver.image_url(), factor=3))
        for task_id, size in [(bare, (32, 24)), (url, (48, 36))]:
            final = await wait_final(client, task_id)
            assert final["status"] == 1
            assert image_size((await client.get(final["resultUrl"])).content) == size


@pytest.mark.parametrize(
    ("name", "needle"),
    [("missing.png", "failed to download the image"), ("junk.png", "not a readable image")],
)
async def test_unusable_input_fails_the_task(receiver: Receiver, name: str, needle: str) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        task_id = await submit(client, body(receiver.image_url(name)))
        final = await wait_final(client, task_id)
        assert (await credits(client))["remaining"] == 1000
    assert final["status"] == 2
    assert final["resultUrl"] == ""
    assert final["creditsIncrement"] == 0
    assert needle in final["msg"]


async def test_credits_decrease_per_successful_task(receiver: Receiver) -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        assert await credits(client) == {"businessId": "sandbox", "total": 1000, "remaining": 1000}
        for _ in range(2):
            await wait_final(client, await submit(client, body(data_uri(PNG))))
        await wait_final(client, await submit(client, body(receiver.image_url("junk.png"))))
        assert (await credits(client))["remaining"] == 998
        assert (await fotor_stats(client))["credits_calls"] == 2


async def test_no_credits_left_is_510() -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    fotor_of(app).credits_used = 1000
    async with asgi_sandbox(app) as client:
        r = await client.post(SUBMIT, json=body(data_uri(PNG)), headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"code": "510", "msg": "No enough credits", "data": None}
    assert fotor_of(app).tasks == {}


async def test_unknown_task_is_404_and_missing_id_is_400() -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        r = await client.get(f"{API}/aiart/tasks/{'0' * 32}", headers=AUTH)
        assert r.status_code == 404
        assert r.json() == {"code": "404", "msg": "task not found", "data": None}
        r = await client.get(f"{API}/aiart/tasks/", headers=AUTH)
        assert r.status_code == 400
        assert r.json()["code"] == "400"


@pytest.mark.parametrize(("retry_after_s", "header"), [(1.0, "1"), (2.5, "2.5")])
async def test_submit_429_has_retry_after_and_creates_nothing(
    retry_after_s: float, header: str
) -> None:
    app = create_sandbox_app(
        allow=LOOPBACK, faults=Faults(submit_429=1, retry_after_s=retry_after_s)
    )
    async with asgi_sandbox(app) as client:
        r = await client.post(SUBMIT, json=body(data_uri(PNG)), headers=AUTH)
        assert r.status_code == 429
        assert r.headers["retry-after"] == header
        assert r.json()["code"] == "429"
        stats = await fotor_stats(client)
    assert (stats["submits"], stats["submits_throttled"], stats["jobs_created"]) == (1, 1, 0)
    assert fotor_of(app).tasks == {}


@pytest.mark.parametrize(
    ("fault", "status", "answer", "counter"),
    [
        (
            "submit_500",
            500,
            {"code": "500", "msg": "internal server error", "data": None},
            "submits_errored",
        ),
        (
            "error_in_200",
            200,
            {"code": "999", "msg": "unknown error", "data": None},
            "submits_error_in_200",
        ),
        (
            "no_credit",
            200,
            {"code": "510", "msg": "No enough credits", "data": None},
            "submits_no_credit",
        ),
    ],
)
async def test_submit_error_faults_create_nothing(
    fault: str, status: int, answer: dict[str, Any], counter: str
) -> None:
    faults = Faults()
    faults.update({fault: 1.0})
    app = create_sandbox_app(allow=LOOPBACK, faults=faults)
    async with asgi_sandbox(app) as client:
        r = await client.post(SUBMIT, json=body(data_uri(PNG)), headers=AUTH)
        assert r.status_code == status
        assert r.json() == answer
        assert (await credits(client))["remaining"] == 1000
        stats = await fotor_stats(client)
    assert (stats[counter], stats["jobs_created"]) == (1, 0)
    assert fotor_of(app).tasks == {}


async def test_status_faults() -> None:
    faults = Faults()
    app = create_sandbox_app(allow=LOOPBACK, faults=faults)
    async with asgi_sandbox(app) as client:
        task_id = await submit(client, body(data_uri(PNG)))
        faults.update({"status_429": 1, "retry_after_s": 3})
        r = await client.get(f"{API}/aiart/tasks/{task_id}", headers=AUTH)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "3"
        assert r.json()["code"] == "429"
        faults.update({"status_429": 0, "status_500": 1})
        r = await client.get(f"{API}/aiart/tasks/{task_id}", headers=AUTH)
        assert r.status_code == 500
        assert r.json()["code"] == "500"
        faults.update({"status_500": 0})
        assert (await wait_final(client, task_id))["status"] == 1
        stats = await fotor_stats(client)
    assert (stats["status_throttled"], stats["status_errored"]) == (1, 1)


async def test_nsfw_fault() -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(nsfw=1))
    async with asgi_sandbox(app) as client:
        final = await wait_final(client, await submit(client, body(data_uri(PNG))))
        assert (await credits(client))["remaining"] == 1000
    assert final["status"] == 2
    assert final["hasHsfw"] is True
    assert final["resultUrl"] == ""
    assert "NSFW" in final["msg"]


async def test_empty_result_fault_is_charged() -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(empty_result=1))
    async with asgi_sandbox(app) as client:
        final = await wait_final(client, await submit(client, body(data_uri(PNG))))
        assert (await credits(client))["remaining"] == 999
    assert final["status"] == 1
    assert final["resultUrl"] == ""
    assert final["hasHsfw"] is False


async def test_s3_result_fault_is_served_under_s3() -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(s3_result=1))
    async with asgi_sandbox(app) as client:
        final = await wait_final(client, await submit(client, body(data_uri(PNG))))
        url = final["resultUrl"]
        assert url.startswith("s3://img-pub-fotor/results/")
        assert url.endswith(".png")
        key = url.removeprefix("s3://img-pub-fotor/")
        got = await client.get(f"/fotor/s3/{key}")
        assert got.status_code == 200
        assert image_size(got.content) == (32, 24)
        assert (await fotor_stats(client))["results_s3"] == 1


async def test_expired_and_corrupt_results() -> None:
    faults = Faults(expire_result=1)
    app = create_sandbox_app(allow=LOOPBACK, faults=faults, seed=3)
    async with asgi_sandbox(app) as client:
        task_id = await submit(client, body(data_uri(PNG)))
        expired = await wait_final(client, task_id)
        assert (await client.get(expired["resultUrl"])).status_code == 410
        faults.update({"expire_result": 0, "corrupt_result": 1})
        corrupt = await wait_final(client, task_id)
        got = await client.get(corrupt["resultUrl"])
        stats = await fotor_stats(client)
    assert got.status_code == 200
    with pytest.raises(OSError):
        Image.open(io.BytesIO(got.content))
    assert (stats["results_expired"], stats["results_corrupt"]) == (1, 1)


async def test_result_base_url_points_elsewhere() -> None:
    app = create_sandbox_app(
        allow=LOOPBACK, faults=Faults(result_base_url="http://169.254.169.254/x/")
    )
    async with asgi_sandbox(app) as client:
        final = await wait_final(client, await submit(client, body(data_uri(PNG))))
    assert final["resultUrl"].startswith("http://169.254.169.254/x/fotor/results/")


async def test_webhook_setting() -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        assert (await client.get("/fotor/webhook")).json() == {"url": None}
        r = await client.put("/fotor/webhook", json={"url": "http://127.0.0.1:9/hook"})
        assert r.json() == {"url": "http://127.0.0.1:9/hook"}
        assert (await client.get("/fotor/webhook")).json() == {"url": "http://127.0.0.1:9/hook"}
        for bad in (b"{oops", b"[1]", b'{"url": 5}', b'{"url": "ftp://x/y"}', b"{}"):
            r = await client.put("/fotor/webhook", content=bad)
            assert r.status_code == 400, bad
        assert fotor_of(app).webhook_url == "http://127.0.0.1:9/hook"
        assert (await client.put("/fotor/webhook", json={"url": None})).json() == {"url": None}
        assert fotor_of(app).webhook_url is None


async def test_stats_appear_with_the_first_fotor_request() -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    async with asgi_sandbox(app) as client:
        assert "fotor" not in (await client.get("/stats")).json()
        await client.get(f"{API}/credits", headers=AUTH)
        stats = await fotor_stats(client)
    assert {
        "submits",
        "status_calls",
        "callbacks_sent",
        "callbacks_failed",
        "results_served",
        "jobs_created",
        "progress_callbacks",
        "submits_error_in_200",
        "submits_no_credit",
    } <= set(stats)
    assert stats["credits_calls"] == 1


async def test_shutdown_cancels_background_tasks() -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(processing_s=60))
    async with asgi_sandbox(app) as client:
        await submit(client, body(data_uri(PNG)))
        assert ctx_of(app).pending_tasks == 1
        started = time.monotonic()
    assert ctx_of(app).pending_tasks == 0
    assert time.monotonic() - started < 5


# -- account webhook over real HTTP -----------------------------------------------


async def test_progress_then_completion_callbacks(receiver: Receiver) -> None:
    async with hooked_sandbox(hook=receiver.hook_url, seed=5) as (base, app, client):
        task_id = await submit(client, body(receiver.image_url()), base)
        progress, done = await receiver.wait_for_payloads(2)
        await settle(app)
        assert progress == {
            "taskId": task_id,
            "status": 0,
            "businessId": "",
            "type": "imgupscale",
            "resultUrl": "",
        }
        assert set(done) == {"taskId", "status", "businessId", "type", "resultUrl"}
        assert (done["taskId"], done["status"]) == (task_id, 1)
        assert done["resultUrl"].startswith(f"{base}/fotor/results/")
        got = await client.get(done["resultUrl"])
        assert image_size(got.content) == (32, 24)
        stats = await fotor_stats(client, base)
    assert len(receiver.deliveries) == 2
    assert stats["progress_callbacks"] == 1
    assert stats["callbacks_sent"] == 2


async def test_progress_callbacks_can_be_turned_off(receiver: Receiver) -> None:
    faults = Faults(progress_callbacks=0)
    async with hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, app, client):
        await submit(client, body(data_uri(PNG)), base)
        [done] = await receiver.wait_for_payloads(1)
        await settle(app)
    assert done["status"] == 1
    assert len(receiver.deliveries) == 1


async def test_failed_and_nsfw_callbacks(receiver: Receiver) -> None:
    faults = Faults(progress_callbacks=0)
    async with hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, app, client):
        await submit(client, body(receiver.image_url("junk.png")), base)
        [failed] = await receiver.wait_for_payloads(1)
        faults.update({"nsfw": 1})
        await submit(client, body(data_uri(PNG)), base)
        _, nsfw = await receiver.wait_for_payloads(2)
        await settle(app)
    assert (failed["status"], failed["resultUrl"]) == (2, "")
    assert "hasHsfw" not in failed
    assert (nsfw["status"], nsfw["hasHsfw"], nsfw["resultUrl"]) == (2, True, "")


async def test_no_webhook_no_callbacks(receiver: Receiver) -> None:
    async with hooked_sandbox() as (base, app, client):
        task_id = await submit(client, body(data_uri(PNG)), base)
        assert (await wait_final(client, task_id, base))["status"] == 1
        await settle(app)
        stats = await fotor_stats(client, base)
    assert receiver.deliveries == []
    assert stats["callbacks_skipped"] == 2
    assert stats["callback_attempts"] == 0


async def test_dropped_callbacks_are_never_sent(receiver: Receiver) -> None:
    faults = Faults(drop_callback=1)
    async with hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, app, client):
        task_id = await submit(client, body(data_uri(PNG)), base)
        assert (await wait_final(client, task_id, base))["status"] == 1
        await settle(app)
        stats = await fotor_stats(client, base)
    assert receiver.deliveries == []
    assert stats["callbacks_dropped"] == 2
    assert stats["callbacks_sent"] == 0


async def test_duplicate_callbacks(receiver: Receiver) -> None:
    faults = Faults(duplicate_callback=1, progress_callbacks=0)
    async with hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, app, client):
        await submit(client, body(data_uri(PNG)), base)
        first, second = await receiver.wait_for_payloads(2)
        await settle(app)
        stats = await fotor_stats(client, base)
    assert first == second
    assert first["status"] == 1
    assert stats["callbacks_sent"] == 2


async def test_delayed_callback(receiver: Receiver) -> None:
    faults = Faults(delay_callback_s=0.3, progress_callbacks=0)
    async with hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, app, client):
        started = time.monotonic()
        await submit(client, body(data_uri(PNG)), base)
        await receiver.wait_for_payloads(1)
        await settle(app)
    assert receiver.deliveries[0][0] - started >= 0.3


async def test_early_callbacks_arrive_before_the_submit_answer(receiver: Receiver) -> None:
    faults = Faults(early_callback=1, processing_s=30)
    async with hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, _app, client):
        task_id = await submit(client, body(data_uri(PNG)), base)
        assert [p["status"] for p in receiver.payloads] == [0, 1]
    assert receiver.payloads[1]["taskId"] == task_id


async def test_submit_timeout_still_creates_the_task(receiver: Receiver) -> None:
    faults = Faults(submit_timeout=1, submit_timeout_s=30, progress_callbacks=0)
    async with hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, app, client):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"{base}{SUBMIT}", json=body(data_uri(PNG)), headers=AUTH, timeout=0.3
            )
        [done] = await receiver.wait_for_payloads(1)
        stats = await fotor_stats(client, base)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert done["status"] == 1
    assert stats["jobs_created"] == 1
    assert stats["submits_timed_out"] == 1
    assert list(fotor_of(app).tasks) == [done["taskId"]]


# -- the unmodified adapter against the sandbox ------------------------------------


@asynccontextmanager
async def adapter_for(base: str, **overrides: Any) -> AsyncIterator[FotorProvider]:
    """The production adapter; only its URLs point at the sandbox (``base`` incl. /sandbox)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        host = base.removesuffix(SANDBOX_MOUNT)
        yield sandbox_adapter(FotorProvider, client, host, max_image_width=100, **overrides)


async def poll_until_done(provider: FotorProvider, task_id: str) -> Any:
    deadline = time.monotonic() + 5
    while True:
        update = await provider.poll(task_id)
        if update.status is not UpdateStatus.RUNNING:
            return update
        assert time.monotonic() < deadline, "task did not finish"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("s3", [False, True])
async def test_adapter_end_to_end(receiver: Receiver, s3: bool) -> None:
    faults = Faults(s3_result=1.0 if s3 else 0.0)
    async with (
        hooked_sandbox(hook=receiver.hook_url, faults=faults) as (base, app, client),
        adapter_for(base) as provider,
    ):
        assert await provider.balance() == {
            "business_id": "sandbox",
            "total": 1000,
            "remaining": 1000,
        }
        big = make_png(40, 30)
        request = SubmitRequest("job-1", 4.0, provider.validate_options(4.0, {}), None, big)
        accepted = await provider.submit(request)
        update = await poll_until_done(provider, accepted.provider_job_id)
        assert update.status is UpdateStatus.SUCCEEDED
        assert update.provider_job_id == accepted.provider_job_id
        assert update.cost == 1.0
        assert update.result_url is not None
        prefix = f"{base}/fotor/s3/results/" if s3 else f"{base}/fotor/results/"
        assert update.result_url.startswith(prefix)
        got = await client.get(update.result_url)
        assert got.status_code == 200
        assert image_size(got.content) == (100, 75)  # 4x, capped at max_image_width=100

        # The webhook bodies parse through the same adapter.
        progress, done = await receiver.wait_for_payloads(2)
        await settle(app)
        parsed = [provider.parse_callback(json.dumps(p).encode()) for p in (progress, done)]
        assert [u.status for u in parsed] == [UpdateStatus.RUNNING, UpdateStatus.SUCCEEDED]
        assert parsed[1].result_url is not None
        assert parsed[1].result_url.startswith(prefix)
        assert image_size((await client.get(parsed[1].result_url)).content) == (100, 75)
        assert (await provider.balance())["remaining"] == 999


async def test_adapter_sees_each_fault_as_its_error() -> None:
    faults = Faults(progress_callbacks=0, retry_after_s=7, submit_timeout_s=30)
    async with (
        hooked_sandbox(faults=faults) as (base, _app, _client),
        adapter_for(base) as provider,
    ):
        request = SubmitRequest("job-1", 2.0, provider.validate_options(2.0, {}), None, PNG)
        faults.update({"submit_429": 1})
        with pytest.raises(ProviderThrottled) as throttled:
            await provider.submit(request)
        assert throttled.value.retry_after_s == 7.0
        faults.update({"submit_429": 0, "submit_500": 1})
        with pytest.raises(ProviderUnavailable):
            await provider.submit(request)
        faults.update({"submit_500": 0, "error_in_200": 1})
        with pytest.raises(ProviderRejected) as unknown:
            await provider.submit(request)
        assert unknown.value.reason == "provider_failed"
        faults.update({"error_in_200": 0, "no_credit": 1})
        with pytest.raises(ProviderRejected) as broke:
            await provider.submit(request)
        assert broke.value.reason == "insufficient_credit"
        faults.update({"no_credit": 0, "nsfw": 1})
        nsfw = await poll_until_done(provider, (await provider.submit(request)).provider_job_id)
        assert nsfw.failure is not None and nsfw.failure.reason == "nsfw"
        faults.update({"nsfw": 0, "empty_result": 1})
        empty = await poll_until_done(provider, (await provider.submit(request)).provider_job_id)
        assert empty.status is UpdateStatus.FAILED
        assert empty.failure is not None and "no result URL" in empty.failure.message
        faults.update({"empty_result": 0})
        task_id = (await provider.submit(request)).provider_job_id
        faults.update({"status_429": 1})
        with pytest.raises(ProviderThrottled):
            await provider.poll(task_id)
        faults.update({"status_429": 0, "status_500": 1})
        with pytest.raises(ProviderUnavailable):
            await provider.poll(task_id)
        faults.update({"status_500": 0, "submit_timeout": 1})
        async with adapter_for(base, submit_timeout_s=0.3) as impatient:
            with pytest.raises(ProviderUncertain):
                await impatient.submit(request)
