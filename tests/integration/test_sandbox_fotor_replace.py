"""The Fotor sandbox's AI Replace (``POST /v1/aiart/replacer``), over ASGI and real HTTP.

A replace task paints what the mask marks (luminance >= 128; alpha 0 keeps) in
the prompt's colour and keeps every other pixel; it shares the upscaler's auth,
errors, faults, task query, credits and account webhook. The last test drives it
with the unmodified ``FotorProvider``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.fotor import FotorProvider
from orchestrator.sandbox.app import create_sandbox_app
from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.fotor_replacer import prompt_colour
from schemas.errors import ProviderRejected
from schemas.jobs import Operation, UpdateStatus
from tests.integration.provider_fixtures import (
    LOOPBACK,
    SANDBOX_MOUNT,
    Receiver,
    asgi_sandbox,
    real_sandbox,
    receiving,
    sandbox_adapter,
    settle,
)

AUTH = {"Authorization": "Bearer test-key"}
API = "/fotor/v1"
REPLACE = f"{API}/aiart/replacer"
WIDTH, HEIGHT = 12, 8
GREY = (90, 120, 150)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def gradient(width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """An input whose every pixel differs, so a moved or changed pixel shows."""
    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            image.putpixel((x, y), (x * 20, y * 30, 100 + x + y))
    return image


def left_half_mask(width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """White (replace) on the left half, black (keep) on the right."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    return mask


INPUT = png(gradient())
MASK = png(left_half_mask())


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def body(
    image: str | None = None, content: Any = "Butterfly", mask: str | None = None
) -> dict[str, Any]:
    return {
        "imageUrl": image if image is not None else data_uri(INPUT),
        "content": content,
        "maskImageUrl": mask if mask is not None else data_uri(MASK),
    }


def pixels(data: bytes) -> tuple[tuple[int, int], list[Any]]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size, [
            image.getpixel((x, y)) for y in range(image.height) for x in range(image.width)
        ]


async def submit(client: httpx.AsyncClient, payload: dict[str, Any], base: str = "") -> str:
    r = await client.post(f"{base}{REPLACE}", json=payload, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (r.json()["code"], r.json()["msg"]) == ("000", "success")
    task_id: str = r.json()["data"]["taskId"]
    return task_id


async def wait_final(client: httpx.AsyncClient, task_id: str, base: str = "") -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        r = await client.get(f"{base}{API}/aiart/tasks/{task_id}", headers=AUTH)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        if data["status"] != 0:
            return data
        assert time.monotonic() < deadline, "task did not finish"
        await asyncio.sleep(0.01)


async def replaced(client: httpx.AsyncClient, payload: dict[str, Any]) -> bytes:
    final = await wait_final(client, await submit(client, payload))
    assert final["status"] == 1, final
    got = await client.get(final["resultUrl"])
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    return got.content


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_sandbox(create_sandbox_app(allow=LOOPBACK)) as c:
        yield c


# -- the edit --------------------------------------------------------------------


def test_prompt_colour_is_the_start_of_sha256() -> None:
    assert prompt_colour("Butterfly") == tuple(hashlib.sha256(b"Butterfly").digest()[:3])
    assert prompt_colour("Butterfly") != prompt_colour("Cat")


async def test_masked_pixels_take_the_prompts_colour_and_the_rest_stay(
    client: httpx.AsyncClient,
) -> None:
    size, out = pixels(await replaced(client, body()))
    _, source = pixels(INPUT)
    assert size == (WIDTH, HEIGHT)
    colour = prompt_colour("Butterfly")
    for index, (got, was) in enumerate(zip(out, source, strict=True)):
        if index % WIDTH < WIDTH // 2:
            assert got == colour, index
        else:
            assert got == was, index


async def test_same_prompt_same_result_other_prompt_other_colour(
    client: httpx.AsyncClient,
) -> None:
    first = await replaced(client, body())
    again = await replaced(client, body())
    other = await replaced(client, body(content="A red bicycle"))
    assert first == again
    assert pixels(other)[1][0] == prompt_colour("A red bicycle") != pixels(first)[1][0]
    assert pixels(other)[1][WIDTH - 1] == pixels(first)[1][WIDTH - 1]  # unmasked: unchanged


async def test_mask_threshold_and_transparency(client: httpx.AsyncClient) -> None:
    # One row: luminance 127 keeps, 128 replaces, white but fully transparent keeps,
    # white and barely opaque replaces.
    image = Image.new("RGB", (4, 1), GREY)
    mask = Image.new("LA", (4, 1))
    for x, value in enumerate([(127, 255), (128, 255), (255, 0), (255, 1)]):
        mask.putpixel((x, 0), value)
    _, out = pixels(await replaced(client, body(data_uri(png(image)), mask=data_uri(png(mask)))))
    colour = prompt_colour("Butterfly")
    assert out == [GREY, colour, GREY, colour]


async def test_an_rgb_mask_counts_by_luminance(client: httpx.AsyncClient) -> None:
    image = Image.new("RGB", (3, 1), GREY)
    mask = Image.new("RGB", (3, 1))
    # Luminance: pure green 150 (replace), pure red 76 (keep), pure blue 29 (keep).
    for x, value in enumerate([(0, 255, 0), (255, 0, 0), (0, 0, 255)]):
        mask.putpixel((x, 0), value)
    _, out = pixels(await replaced(client, body(data_uri(png(image)), mask=data_uri(png(mask)))))
    assert out == [prompt_colour("Butterfly"), GREY, GREY]


async def test_transparency_of_the_input_is_kept(client: httpx.AsyncClient) -> None:
    image = Image.new("RGBA", (2, 1), (10, 20, 30, 40))
    mask = Image.new("L", (2, 1), 0)
    mask.putpixel((0, 0), 255)
    _, out = pixels(await replaced(client, body(data_uri(png(image)), mask=data_uri(png(mask)))))
    assert out == [(*prompt_colour("Butterfly"), 255), (10, 20, 30, 40)]


async def test_inputs_by_url(receiver: Receiver) -> None:
    async with asgi_sandbox(create_sandbox_app(allow=LOOPBACK)) as client:
        by_url = await replaced(client, body(receiver("in.png"), mask=receiver("mask.png")))
        inline = await replaced(client, body())
    assert by_url == inline


# -- the task, its cost and its type -------------------------------------------------


async def test_task_details_and_credits(client: httpx.AsyncClient) -> None:
    final = await wait_final(client, await submit(client, body()))
    assert final["status"] == 1
    assert final["type"] == "replacer"
    assert final["creditsIncrement"] == 2
    assert final["hasHsfw"] is False
    credits = (await client.get(f"{API}/credits", headers=AUTH)).json()["data"]
    assert credits["remaining"] == 998


async def test_one_credit_left_is_not_enough_for_a_replace() -> None:
    app = create_sandbox_app(allow=LOOPBACK)
    app.state.fotor.credits_used = 999
    async with asgi_sandbox(app) as client:
        r = await client.post(REPLACE, json=body(), headers=AUTH)
        assert r.json() == {"code": "510", "msg": "No enough credits", "data": None}
    assert app.state.fotor.tasks == {}


# -- errors ----------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    images = {"in.png": INPUT, "mask.png": MASK, "junk.png": b"not an image"}
    async with receiving(images) as rec:
        yield rec


SMALL_MASK = data_uri(png(left_half_mask(WIDTH, HEIGHT - 1)))
JUNK = data_uri(b"not an image")


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"imageUrl": data_uri(INPUT), "maskImageUrl": data_uri(MASK)}, "content"),
        (body(content=""), "content"),
        (body(content="   "), "content"),
        (body(content=5), "content"),
        (body(content="x" * 10_001), "content"),
        ({"content": "x", "maskImageUrl": data_uri(MASK)}, "imageUrl"),
        ({"content": "x", "imageUrl": data_uri(INPUT)}, "maskImageUrl"),
        (body(image="ftp://x/y.png"), "imageUrl"),
        (body(mask="data:image/png;base64,!!!"), "maskImageUrl"),
        (body(image=JUNK), "imageUrl: input is not a readable image"),
        (body(mask=JUNK), "maskImageUrl: input is not a readable image"),
        (body(mask=SMALL_MASK), "sizes must match"),
    ],
)
async def test_bad_bodies_are_400s(
    client: httpx.AsyncClient, payload: dict[str, Any], needle: str
) -> None:
    r = await client.post(REPLACE, json=payload, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "400"
    assert r.json()["data"] is None
    assert needle in r.json()["msg"]
    stats = (await client.get("/stats")).json()["fotor"]
    assert (stats["submits_rejected"], stats["jobs_created"]) == (1, 0)


@pytest.mark.parametrize(
    ("image", "mask", "needle"),
    [
        ("missing.png", "mask.png", "failed to download imageUrl"),
        ("in.png", "missing.png", "failed to download maskImageUrl"),
        ("junk.png", "mask.png", "imageUrl: input is not a readable image"),
        ("in.png", "junk.png", "maskImageUrl: input is not a readable image"),
    ],
)
async def test_unusable_urls_are_400s(
    receiver: Receiver, image: str, mask: str, needle: str
) -> None:
    async with asgi_sandbox(create_sandbox_app(allow=LOOPBACK)) as client:
        r = await client.post(
            REPLACE, json=body(receiver(image), mask=receiver(mask)), headers=AUTH
        )
    assert r.status_code == 400
    assert needle in r.json()["msg"]


async def test_the_guard_refuses_addresses_it_does_not_allow(receiver: Receiver) -> None:
    async with asgi_sandbox(create_sandbox_app()) as client:  # loopback not allowed
        r = await client.post(REPLACE, json=body(receiver("in.png")), headers=AUTH)
    assert r.status_code == 400
    assert r.json()["msg"] == "failed to download imageUrl"


async def test_without_a_key_is_401(client: httpx.AsyncClient) -> None:
    r = await client.post(REPLACE, json=body())
    assert r.status_code == 401
    assert r.json()["code"] == "401"


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("submit_429", 429, "429"), ("submit_500", 500, "500"), ("error_in_200", 200, "999")],
)
async def test_submit_faults_create_nothing(fault: str, status: int, code: str) -> None:
    faults = Faults()
    faults.update({fault: 1.0})
    app = create_sandbox_app(allow=LOOPBACK, faults=faults)
    async with asgi_sandbox(app) as client:
        r = await client.post(REPLACE, json=body(), headers=AUTH)
    assert (r.status_code, r.json()["code"]) == (status, code)
    assert app.state.fotor.tasks == {}


async def test_nsfw_fault() -> None:
    app = create_sandbox_app(allow=LOOPBACK, faults=Faults(nsfw=1))
    async with asgi_sandbox(app) as client:
        final = await wait_final(client, await submit(client, body()))
    assert (final["status"], final["hasHsfw"], final["resultUrl"]) == (2, True, "")
    assert final["creditsIncrement"] == 0


# -- the account webhook and the unmodified adapter, over real HTTP -------------------


async def test_webhook_and_adapter_end_to_end(receiver: Receiver) -> None:
    async with real_sandbox() as (base, app, client):
        r = await client.put(f"{base}/fotor/webhook", json={"url": receiver.hook_url})
        assert r.status_code == 200
        host = base.removesuffix(SANDBOX_MOUNT)
        provider = sandbox_adapter(FotorProvider, client, host)
        assert Operation.REPLACE in provider.operations
        request = SubmitRequest(
            "job-1",
            1.0,
            provider.validate_options(1.0, {}, operation=Operation.REPLACE),
            receiver("in.png"),
            operation=Operation.REPLACE,
            prompt="Butterfly",
            mask_url=receiver("mask.png"),
        )
        accepted = await provider.submit(request)
        deadline = time.monotonic() + 5
        while (update := await provider.poll(accepted.provider_job_id)).status is (
            UpdateStatus.RUNNING
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert update.status is UpdateStatus.SUCCEEDED
        assert update.cost == 2.0
        assert update.result_url is not None
        result = (await client.get(update.result_url)).content
        assert pixels(result)[1][0] == prompt_colour("Butterfly")
        assert pixels(result)[1][-1] == pixels(INPUT)[1][-1]

        progress, done = await receiver.wait_for_payloads(2)
        await settle(app)
        assert (progress["type"], progress["status"]) == ("replacer", 0)
        assert (done["taskId"], done["type"], done["status"]) == (
            accepted.provider_job_id,
            "replacer",
            1,
        )
        parsed = provider.parse_callback(receiver.bodies[1])
        assert parsed.status is UpdateStatus.SUCCEEDED

        # The sandbox's 400 reaches the adapter as rejected input.
        bad = SubmitRequest(
            "job-2",
            1.0,
            {},
            receiver("in.png"),
            operation=Operation.REPLACE,
            prompt="Butterfly",
            mask_url=receiver("junk.png"),
        )
        with pytest.raises(ProviderRejected) as info:
            await provider.submit(bad)
        assert info.value.reason == "rejected_input"
