"""A Fotor client that is not ours, against the sandbox: the ``fotor-sdk`` package.

Only its endpoint points at the sandbox (served by uvicorn on 127.0.0.1), and its
poll interval is shortened so the test is quick. If it needs something the
sandbox does not do like Fotor, the sandbox is what gets fixed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from fotor_sdk import FotorAPIError, FotorClient, TaskResult, TaskStatus, image_upscale
from PIL import Image

from orchestrator.sandbox.fotor_replacer import prompt_colour
from tests.integration.provider_fixtures import Receiver, real_sandbox, receiving

REPLACER = "/v1/aiart/replacer"


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


INPUT = png(Image.new("RGB", (10, 6), (90, 120, 150)))
MASK_IMAGE = Image.new("L", (10, 6), 0)
MASK_IMAGE.paste(255, (0, 0, 5, 6))  # the left half is replaced
MASK = png(MASK_IMAGE)


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving({"in.png": INPUT, "mask.png": MASK}) as rec:
        yield rec


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[FotorClient, httpx.AsyncClient]]:
    async with real_sandbox() as (base, _app, client):
        yield FotorClient("sdk-key", endpoint=f"{base}/fotor", poll_interval=0.02), client


async def result_pixels(client: httpx.AsyncClient, result: TaskResult) -> list[object]:
    assert result.result_url is not None
    got = await client.get(result.result_url)
    assert got.status_code == 200
    with Image.open(io.BytesIO(got.content)) as image:
        image.load()
        assert image.size == (10, 6)
        return [image.getpixel((x, 0)) for x in range(10)]


async def test_sdk_completes_a_replace_task(
    sandbox: tuple[FotorClient, httpx.AsyncClient], receiver: Receiver
) -> None:
    sdk, client = sandbox
    task_id = await sdk.create_task(
        REPLACER,
        {
            "imageUrl": receiver("in.png"),
            "content": "Butterfly",
            "maskImageUrl": receiver("mask.png"),
        },
    )
    result = await sdk.wait_for_task(task_id)

    assert result.success, result
    assert result.status is TaskStatus.COMPLETED
    assert result.task_id == task_id
    assert result.creditsIncrement == 2
    row = await result_pixels(client, result)
    assert row == [prompt_colour("Butterfly")] * 5 + [(90, 120, 150)] * 5
    assert (await sdk.get_credits())["remaining"] == 998


async def test_sdk_submit_and_wait_with_data_uris(
    sandbox: tuple[FotorClient, httpx.AsyncClient],
) -> None:
    sdk, client = sandbox
    payload = {"imageUrl": data_uri(INPUT), "content": "Cat", "maskImageUrl": data_uri(MASK)}
    result = await sdk.submit_and_wait(REPLACER, payload)
    assert result.success, result
    assert (await result_pixels(client, result))[0] == prompt_colour("Cat")


async def test_sdk_sees_a_bad_body_as_a_400(
    sandbox: tuple[FotorClient, httpx.AsyncClient],
) -> None:
    sdk, _client = sandbox
    payload = {"imageUrl": data_uri(INPUT), "content": "", "maskImageUrl": data_uri(MASK)}
    with pytest.raises(FotorAPIError) as info:
        await sdk.create_task(REPLACER, payload)
    assert info.value.code == "400"
    assert "content" in str(info.value)


async def test_sdk_upscale_helper_works_too(
    sandbox: tuple[FotorClient, httpx.AsyncClient],
) -> None:
    sdk, client = sandbox
    result = await image_upscale(sdk, image_url=data_uri(INPUT), upscale_ratio=2.0)
    assert result.success, result
    assert result.result_url is not None
    with Image.open(io.BytesIO((await client.get(result.result_url)).content)) as image:
        assert image.size == (20, 12)
