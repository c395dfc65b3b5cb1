"""The local provider end to end: its app on a real uvicorn, the adapter, a webhook receiver.

Everything listens on 127.0.0.1 (random ports): the local app mounted at ``/local``
in a host app (as the service mounts it), and a small receiver that records
webhooks and serves an input image by URL.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image, ImageChops
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from orchestrator.fetch.allowlist import AllowList
from orchestrator.local import engines, inpainting
from orchestrator.local.app import LOCAL_MOUNT, create_local_app
from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.local import LocalProvider
from schemas.errors import ProviderRejected, ProviderThrottled
from schemas.jobs import FailureReason, Operation, ProviderUpdate, UpdateStatus

API_KEY = "local-test-key"


def png_bytes(width: int, height: int, *, noise: bool = False) -> bytes:
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Run ``app`` (lifespan included) on a real uvicorn at 127.0.0.1:<random port>."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("uvicorn stopped during startup")
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Receiver:
    """Records webhook bodies by name and serves ``/input.png``."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self.answers: dict[str, list[int]] = {}  # statuses to answer, in order, then 204
        self.input_png = b""
        self._arrived = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/hook/{name}", self.hook, methods=["POST"]),
                Route("/input.png", self.image, methods=["GET"]),
            ]
        )

    async def hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.bodies.setdefault(name, []).append(await request.body())
        self._arrived.set()
        scripted = self.answers.get(name)
        return Response(status_code=scripted.pop(0) if scripted else 204)

    async def image(self, request: Request) -> Response:
        return Response(self.input_png, media_type="image/png")

    async def wait(self, name: str, timeout_s: float = 15, count: int = 1) -> bytes:
        async with asyncio.timeout(timeout_s):
            while len(self.bodies.get(name, ())) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.bodies[name][0]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    async with serve(hooks.app) as url:
        yield hooks, url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        yield http


LocalFactory = Callable[..., Awaitable[tuple[LocalProvider, str]]]


@pytest.fixture
async def local(tmp_path: Path, client: httpx.AsyncClient) -> AsyncIterator[LocalFactory]:
    """Start the local app (mounted at /local) with options; give an adapter and its base URL."""
    async with AsyncExitStack() as stack:

        async def start(
            engines_list: list[str] | None = None, **options: Any
        ) -> tuple[LocalProvider, str]:
            settings: dict[str, Any] = {
                "api_key": API_KEY,
                "work_dir": tmp_path / "local",
                "workers": 1,
                "callback_backoff_s": 0.05,
                # Its guarded client reaches this test's servers only because they are allowed.
                "allow": AllowList.parse("127.0.0.1"),
                **options,
            }
            local_app = create_local_app(**settings)

            @asynccontextmanager
            async def lifespan(app: Starlette) -> AsyncIterator[None]:
                async with local_app.router.lifespan_context(local_app):
                    yield

            host = Starlette(routes=[Mount(LOCAL_MOUNT, app=local_app)], lifespan=lifespan)
            url = await stack.enter_async_context(serve(host)) + LOCAL_MOUNT
            provider = LocalProvider(
                client,
                base_url=url,
                api_key=API_KEY,
                engines=engines_list or engines.available_engines(),
            )
            return provider, url

        yield start


def request_for(
    job_id: str, hooks_url: str, image: bytes | None, **overrides: Any
) -> SubmitRequest:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "scale": 2.0,
        "options": {},
        "image_url": None,
        "image_bytes": image,
        "callback_url": f"{hooks_url}/hook/{job_id}",
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


async def wait_for_status(
    provider: LocalProvider, job_id: str, wanted: UpdateStatus, timeout_s: float = 15
) -> ProviderUpdate:
    async with asyncio.timeout(timeout_s):
        while True:
            update = await provider.poll(job_id)
            if update.status is wanted:
                return update
            await asyncio.sleep(0.01)


async def fetch_size(client: httpx.AsyncClient, url: str) -> tuple[int, int]:
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "PNG"
        return image.size


async def test_submit_then_webhook_with_result_of_exact_scale(
    local: LocalFactory, receiver: tuple[Receiver, str], client: httpx.AsyncClient
) -> None:
    hooks, hooks_url = receiver
    provider, base = await local()

    accepted = await provider.submit(request_for("job-1", hooks_url, png_bytes(40, 30), scale=3))
    update = provider.parse_callback(await hooks.wait("job-1"))

    assert update.status is UpdateStatus.SUCCEEDED
    assert update.provider == "local"
    assert update.provider_job_id == accepted.provider_job_id
    assert update.result_url is not None
    assert update.result_url.startswith(f"{base}/results/")
    assert update.raw["engine"] == engines.default_engine()
    assert (update.raw["width"], update.raw["height"]) == (120, 90)
    assert await fetch_size(client, update.result_url) == (120, 90)
    polled = await provider.poll(accepted.provider_job_id)
    assert (polled.status, polled.result_url) == (UpdateStatus.SUCCEEDED, update.result_url)


async def test_image_by_url_and_fractional_scale_with_lanczos(
    local: LocalFactory, receiver: tuple[Receiver, str], client: httpx.AsyncClient
) -> None:
    hooks, hooks_url = receiver
    hooks.input_png = png_bytes(41, 27)
    provider, _ = await local()

    await provider.submit(
        request_for(
            "by-url",
            hooks_url,
            None,
            image_url=f"{hooks_url}/input.png",
            scale=2.5,
            options={"engine": "lanczos"},
        )
    )
    update = provider.parse_callback(await hooks.wait("by-url"))

    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url is not None
    assert update.raw["engine"] == "lanczos"
    assert await fetch_size(client, update.result_url) == (102, 68)  # round(41*2.5), 27*2.5


async def test_busy_server_answers_429_then_takes_work_again(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    hooks, hooks_url = receiver
    provider, _ = await local(max_concurrent_jobs=1)
    slow = request_for("slow", hooks_url, png_bytes(600, 600, noise=True), scale=4)

    await provider.submit(slow)
    with pytest.raises(ProviderThrottled) as throttled:
        await provider.submit(request_for("second", hooks_url, png_bytes(8, 8)))
    assert throttled.value.retry_after_s == 2

    assert provider.parse_callback(await hooks.wait("slow")).status is UpdateStatus.SUCCEEDED
    await provider.submit(request_for("third", hooks_url, png_bytes(8, 8)))
    assert provider.parse_callback(await hooks.wait("third")).status is UpdateStatus.SUCCEEDED


async def test_unknown_engine_is_rejected_input(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    _, hooks_url = receiver
    # The adapter believes in an engine the server does not run: the server says 400.
    provider, _ = await local(engines_list=["lanczos", "bogus"])

    with pytest.raises(ProviderRejected) as rejected:
        await provider.submit(
            request_for("bogus", hooks_url, png_bytes(8, 8), options={"engine": "bogus"})
        )
    assert rejected.value.reason == FailureReason.REJECTED_INPUT
    assert "unknown_engine" in rejected.value.message


async def test_too_many_pixels_is_rejected_at_submit(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    _, hooks_url = receiver
    provider, _ = await local(max_input_pixels=1_000_000)
    buf = io.BytesIO()
    Image.new("1", (2000, 1000)).save(buf, format="PNG")

    with pytest.raises(ProviderRejected) as rejected:
        await provider.submit(request_for("big", hooks_url, buf.getvalue()))
    assert rejected.value.reason == FailureReason.REJECTED_INPUT
    assert "input_too_large" in rejected.value.message
    assert "2000x1000" in rejected.value.message


async def test_image_that_fails_to_decode_ends_failed_through_the_webhook(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    hooks, hooks_url = receiver
    provider, _ = await local()
    truncated = png_bytes(64, 64, noise=True)[:2000]  # a sound header, cut-off pixel data

    await provider.submit(request_for("cut", hooks_url, truncated))
    update = provider.parse_callback(await hooks.wait("cut"))

    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == FailureReason.REJECTED_INPUT
    assert update.raw["error"]["code"] == "invalid_image"


async def test_poll_of_an_unknown_job_is_a_failed_update(local: LocalFactory) -> None:
    provider, _ = await local()

    update = await provider.poll("no-such-job")

    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == FailureReason.PROVIDER_FAILED


async def test_wrong_api_key_is_provider_auth(
    local: LocalFactory, receiver: tuple[Receiver, str], client: httpx.AsyncClient
) -> None:
    _, hooks_url = receiver
    _, base = await local()
    provider = LocalProvider(client, base_url=base, api_key="wrong", engines=["lanczos"])

    with pytest.raises(ProviderRejected) as rejected:
        await provider.submit(request_for("key", hooks_url, png_bytes(8, 8)))
    assert rejected.value.reason == FailureReason.PROVIDER_AUTH


async def test_event_loop_answers_while_a_job_runs(
    local: LocalFactory, receiver: tuple[Receiver, str], client: httpx.AsyncClient
) -> None:
    hooks, hooks_url = receiver
    provider, base = await local(engines_list=["lanczos"], default_engine="lanczos")
    # A first small job makes sure the worker process is up before we time anything.
    await provider.submit(request_for("warm", hooks_url, png_bytes(8, 8)))
    await hooks.wait("warm")

    slow = await provider.submit(
        request_for("slow", hooks_url, png_bytes(800, 800, noise=True), scale=4)
    )
    await wait_for_status(provider, slow.provider_job_id, UpdateStatus.RUNNING)
    latencies = []
    for _ in range(5):
        started = time.perf_counter()
        health = await client.get(f"{base}/healthz")
        latencies.append(time.perf_counter() - started)
        assert health.status_code == 200
        assert health.json()["active"] == 1
    still = await provider.poll(slow.provider_job_id)

    assert still.status is UpdateStatus.RUNNING  # the answers above came while it ran
    assert max(latencies) < 0.2
    assert provider.parse_callback(await hooks.wait("slow")).status is UpdateStatus.SUCCEEDED


async def test_missing_image_is_rejected_before_any_request(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    _, hooks_url = receiver
    provider, _ = await local()

    with pytest.raises(ProviderRejected) as rejected:
        await provider.submit(request_for("none", hooks_url, None))
    assert rejected.value.reason == FailureReason.REJECTED_INPUT


async def webhooks_settled(
    caplog: pytest.LogCaptureFixture, *provider_job_ids: str, timeout_s: float = 15
) -> None:
    """Wait for the local provider's last word on each job's webhook (delivered, or
    given up): no attempt comes after it, so counting them then is final."""

    def settled(job_id: str, said: set[str]) -> bool:
        return bool(
            {f"local job {job_id} webhook delivered", f"local job {job_id} webhook not delivered"}
            & said
        )

    async with asyncio.timeout(timeout_s):
        while not all(
            settled(job_id, {r.getMessage() for r in caplog.records}) for job_id in provider_job_ids
        ):
            await asyncio.sleep(0.01)


async def test_webhook_is_retried_until_accepted_and_not_after_a_final_4xx(
    local: LocalFactory, receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.local.server")
    hooks, hooks_url = receiver
    hooks.answers = {"flaky": [503, 500], "gone": [404]}
    provider, _ = await local()

    flaky = await provider.submit(request_for("flaky", hooks_url, png_bytes(8, 8)))
    gone = await provider.submit(request_for("gone", hooks_url, png_bytes(8, 8)))
    await webhooks_settled(caplog, flaky.provider_job_id, gone.provider_job_id)

    assert len(hooks.bodies["flaky"]) == 3
    assert len(set(hooks.bodies["flaky"])) == 1
    assert len(hooks.bodies["gone"]) == 1


async def test_a_dead_worker_fails_its_job_and_the_next_job_still_runs(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    hooks, hooks_url = receiver
    provider, _ = await local(default_engine="lanczos")
    await provider.submit(request_for("warm", hooks_url, png_bytes(8, 8)))
    await hooks.wait("warm")

    slow = await provider.submit(
        request_for("killed", hooks_url, png_bytes(800, 800, noise=True), scale=4)
    )
    # Running: its work is in the pool's hands, so the worker's death fails it.
    await wait_for_status(provider, slow.provider_job_id, UpdateStatus.RUNNING)
    for child in multiprocessing.active_children():
        child.kill()
    killed = provider.parse_callback(await hooks.wait("killed"))

    assert killed.status is UpdateStatus.FAILED
    assert killed.failure is not None
    assert killed.failure.reason == FailureReason.PROVIDER_FAILED
    assert killed.raw["error"]["code"] == "worker_crashed"
    await provider.submit(request_for("after", hooks_url, png_bytes(8, 8)))
    assert provider.parse_callback(await hooks.wait("after")).status is UpdateStatus.SUCCEEDED


# --- replace -------------------------------------------------------------------------


def png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def replace_request(
    job_id: str, hooks_url: str, image: bytes, mask: bytes | None, **overrides: Any
) -> SubmitRequest:
    fields: dict[str, Any] = {
        "operation": Operation.REPLACE,
        "prompt": "a calm blue sky",
        "mask_bytes": mask,
        "scale": 1.0,
        **overrides,
    }
    return request_for(job_id, hooks_url, image, **fields)


async def fetch_image(client: httpx.AsyncClient, url: str) -> Image.Image:
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "PNG"
        return image.convert("RGB")


async def test_replace_keeps_the_unmasked_pixels_and_repaints_the_masked_ones(
    local: LocalFactory, receiver: tuple[Receiver, str], client: httpx.AsyncClient
) -> None:
    hooks, hooks_url = receiver
    provider, base = await local()
    source = Image.frombytes("RGB", (64, 48), os.urandom(64 * 48 * 3))
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (20, 10, 40, 30))  # white: replace; black: keep

    accepted = await provider.submit(
        replace_request("replace", hooks_url, png_of(source), png_of(mask))
    )
    update = provider.parse_callback(await hooks.wait("replace"))

    assert update.status is UpdateStatus.SUCCEEDED
    assert update.provider_job_id == accepted.provider_job_id
    assert update.raw["operation"] == "replace"
    assert update.raw["engine"] == inpainting.method()
    assert (update.raw["width"], update.raw["height"], update.raw["scale"]) == (64, 48, 1)
    assert update.result_url is not None and update.result_url.startswith(f"{base}/results/")
    result = await fetch_image(client, update.result_url)
    assert result.size == source.size
    changed = ImageChops.difference(result, source).getbbox()
    assert changed is not None  # the masked area was repainted ...
    left, top, right, bottom = changed
    assert left >= 20 and top >= 10  # ... and only it
    assert right <= 40 and bottom <= 30


async def test_replace_with_a_mask_by_url(
    local: LocalFactory, receiver: tuple[Receiver, str], client: httpx.AsyncClient
) -> None:
    hooks, hooks_url = receiver
    source = Image.new("RGB", (30, 20), (200, 40, 40))
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))
    mask.paste((255, 255, 255, 255), (10, 5, 20, 15))
    hooks.input_png = png_of(mask)
    provider, _ = await local()

    await provider.submit(
        replace_request(
            "by-url", hooks_url, png_of(source), None, mask_url=f"{hooks_url}/input.png"
        )
    )
    update = provider.parse_callback(await hooks.wait("by-url"))

    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url is not None
    result = await fetch_image(client, update.result_url)
    assert result.getpixel((15, 10)) == pytest.approx((200, 40, 40), abs=4)


async def test_a_mask_of_another_size_fails_the_job_as_rejected_input(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    _, hooks_url = receiver
    provider, _ = await local()

    with pytest.raises(ProviderRejected) as rejected:
        await provider.submit(
            replace_request(
                "sizes", hooks_url, png_bytes(40, 30), png_of(Image.new("L", (30, 40), 255))
            )
        )
    assert rejected.value.reason == FailureReason.REJECTED_INPUT
    assert "invalid_mask" in rejected.value.message
    assert "the mask is 30x40 pixels but the image is 40x30" in rejected.value.message


async def test_a_replace_without_prompt_or_mask_is_rejected_before_any_request(
    local: LocalFactory, receiver: tuple[Receiver, str]
) -> None:
    _, hooks_url = receiver
    provider, _ = await local()
    image = png_bytes(8, 8)

    for request in (
        replace_request("no-prompt", hooks_url, image, image, prompt=" "),
        replace_request("no-mask", hooks_url, image, None),
    ):
        with pytest.raises(ProviderRejected) as rejected:
            await provider.submit(request)
        assert rejected.value.reason == FailureReason.REJECTED_INPUT


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mask_base64": "AA=="}, "a replace needs a prompt"),
        ({"prompt": "sky"}, "exactly one of mask_url, mask_base64"),
        ({"prompt": "x" * 1001, "mask_base64": "AA=="}, "prompt is over 1000 characters"),
        ({"prompt": "sky", "mask_base64": "AA==", "scale": 2}, "scale is for operation"),
        ({"operation": "upscale", "scale": 2, "prompt": "sky"}, "prompt is for operation"),
        ({"operation": "erase"}, "operation must be one of: upscale, replace"),
    ],
)
async def test_the_server_refuses_a_malformed_replace(
    local: LocalFactory, client: httpx.AsyncClient, fields: dict[str, Any], message: str
) -> None:
    _, base = await local()
    body = {"operation": "replace", "image_base64": "AA==", **fields}

    answer = await client.post(
        f"{base}/api/v1/upscale", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    assert message in answer.json()["error"]["message"]
