"""Creating replace jobs through the public API: the image and the mask uploaded
(multipart file parts or base64 in JSON), a prompt, and every refusal a 400 that says why."""

from __future__ import annotations

import base64
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from orchestrator.service.runtime import Runtime
from schemas.jobs import Operation
from tests.conftest import AppFactory
from tests.factories import make_png

IMAGE = make_png(40, 30, (10, 120, 200))
MASK = make_png(40, 30, (255, 255, 255))
NOISY = bytes(range(256)) * 8


def _noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: its base64 is long enough to be streamed to a file."""
    pixels = random.Random(width * height).randbytes(width * height * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _inputs(runtime: Runtime) -> list[Path]:
    root = runtime.settings.data_dir / "inputs"
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_file())


def _offers_replace(runtime: Runtime, *names: str) -> None:
    for name in names:
        provider = runtime.providers[name]
        provider.operations = provider.operations | {Operation.REPLACE}


@pytest.fixture
async def app(
    app_factory: AppFactory,
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    async with app_factory() as (_, runtime, client):
        _offers_replace(runtime, "fotor", "local")
        yield runtime, client


def _multipart(
    fields: dict[str, str] | None = None, image: bytes = IMAGE, mask: bytes | None = MASK
) -> dict[str, Any]:
    data = {"provider": "fotor", "operation": "replace", "prompt": "Butterfly", **(fields or {})}
    files = {"image": ("photo.png", image, "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return {"data": data, "files": files}


def _json(**fields: Any) -> dict[str, Any]:
    body = {
        "provider": "fotor",
        "operation": "replace",
        "prompt": "Butterfly",
        "image": _b64(IMAGE),
        "mask": _b64(MASK),
    }
    body.update(fields)
    return {"json": {k: v for k, v in body.items() if v is not None}}


async def test_a_multipart_replace_job_keeps_its_prompt_mask_and_size(
    app: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = app
    answer = await client.post("/v1/jobs", **_multipart({"prompt": "  Butterfly  "}))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["operation"], body["prompt"], body["provider"]) == (
        "replace",
        "Butterfly",
        "fotor",
    )
    job = await runtime.store.get_job(body["id"])
    assert job is not None and job.operation is Operation.REPLACE
    assert job.input_key is not None and job.mask_key is not None
    assert (job.input_width, job.input_height) == (40, 30)
    assert await runtime.inputs.read(job.input_key) == IMAGE
    assert await runtime.inputs.read(job.mask_key) == MASK
    assert len(_inputs(runtime)) == 2


@pytest.mark.parametrize(
    ("image", "mask"),
    [
        (IMAGE, make_png(40, 30, (0, 0, 0))),
        (_noisy_png(64, 48), _noisy_png(64, 48)),
        (IMAGE, _noisy_png(40, 30)),
    ],
    ids=["inline", "both-streamed", "mask-streamed"],
)
async def test_a_json_replace_job_takes_base64_and_data_uris(
    app: tuple[Runtime, httpx.AsyncClient], image: bytes, mask: bytes
) -> None:
    runtime, client = app
    answer = await client.post(
        "/v1/jobs",
        **_json(image=_b64(image), mask="data:image/png;base64," + _b64(mask)),
    )
    assert answer.status_code == 202, answer.text
    job = await runtime.store.get_job(answer.json()["id"])
    assert job is not None and job.mask_key is not None and job.input_key is not None
    assert await runtime.inputs.read(job.mask_key) == mask
    assert await runtime.inputs.read(job.input_key) == image


REFUSALS = [
    pytest.param(_json(prompt=None), "prompt is required", id="no-prompt"),
    pytest.param(_json(prompt="   "), "prompt is required", id="empty-prompt"),
    pytest.param(_json(prompt="x" * 1001), "1001 characters long; at most 1000", id="long-prompt"),
    pytest.param(_json(prompt="a\x00cat"), "control characters", id="control-prompt"),
    pytest.param(_multipart({"prompt": ""}), "prompt is required", id="multipart-empty-prompt"),
    pytest.param(
        _json(mask=_b64(make_png(41, 30))), "mask is 41x30 pixels but the image is 40x30", id="size"
    ),
    pytest.param(
        _multipart(mask=make_png(40, 31)),
        "mask is 40x31 pixels but the image is 40x30",
        id="mp-size",
    ),
    pytest.param(_json(mask=_b64(b"not an image at all")), "mask is not a PNG", id="mask-junk"),
    pytest.param(_multipart(mask=NOISY), "mask is not a PNG", id="multipart-mask-junk"),
    pytest.param(
        _json(mask=_b64(MASK[:8] + bytes(40))), "mask is not a readable image", id="mask-truncated"
    ),
    pytest.param(_json(mask=None), "mask is required", id="no-mask"),
    pytest.param(_multipart(mask=None), "mask is required", id="multipart-no-mask"),
    pytest.param(_json(scale=2), "scale is not taken by operation replace", id="scale"),
    pytest.param(_multipart({"scale": "2"}), "scale is not taken", id="multipart-scale"),
    pytest.param(
        _json(image="https://images.example.test/cat.png"),
        "image must be uploaded for operation replace",
        id="image-url",
    ),
    pytest.param(
        _json(mask="https://images.example.test/mask.png"),
        "mask must be uploaded for operation replace",
        id="mask-url",
    ),
    pytest.param(
        _json(provider="upsampler"),
        "provider upsampler does not offer operation replace; providers that do: fotor, local",
        id="provider-without-replace",
    ),
    pytest.param(
        _json(operation="inpaint"), "operation must be one of: replace, upscale", id="unknown"
    ),
    pytest.param(
        _multipart({"operation": "upscale"}), "mask is only taken by operation replace", id="mask"
    ),
    pytest.param(
        _json(operation=None, mask=None, image=_b64(IMAGE)),
        "prompt is only taken by operation replace",
        id="prompt-on-upscale",
    ),
]


@pytest.mark.parametrize(("request_kwargs", "message"), REFUSALS)
async def test_a_bad_replace_request_is_a_400_that_says_why(
    app: tuple[Runtime, httpx.AsyncClient], request_kwargs: dict[str, Any], message: str
) -> None:
    runtime, client = app
    answer = await client.post("/v1/jobs", **request_kwargs)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert message in error["message"]
    assert (await client.get("/v1/jobs")).json()["jobs"] == []
    assert _inputs(runtime) == []


async def test_no_provider_offering_the_operation_is_said(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        for provider in runtime.providers.values():
            provider.operations = frozenset({Operation.UPSCALE})
        answer = await client.post("/v1/jobs", **_json())
        assert answer.status_code == 400
        assert "no provider configured here does" in answer.json()["error"]["message"]


async def test_an_upscale_job_shows_its_operation_and_no_prompt(
    app: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = app
    answer = await client.post(
        "/v1/jobs", json={"provider": "upsampler", "image": "https://images.example.test/c.png"}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["operation"] == "upscale" and body["scale"] == 2
    assert "prompt" not in body


async def test_jobs_are_listed_by_operation(app: tuple[Runtime, httpx.AsyncClient]) -> None:
    _, client = app
    upscale = await client.post(
        "/v1/jobs", json={"provider": "upsampler", "image": "https://images.example.test/c.png"}
    )
    replace = await client.post("/v1/jobs", **_multipart())
    assert upscale.status_code == replace.status_code == 202

    async def ids(operation: str) -> list[str]:
        answer = await client.get("/v1/jobs", params={"operation": operation})
        assert answer.status_code == 200, answer.text
        return [job["id"] for job in answer.json()["jobs"]]

    assert await ids("replace") == [replace.json()["id"]]
    assert await ids("upscale") == [upscale.json()["id"]]
    refused = await client.get("/v1/jobs", params={"operation": "inpaint"})
    assert refused.status_code == 400


async def test_an_idempotency_key_covers_the_prompt_and_the_mask(
    app: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = app
    key = {"Idempotency-Key": "replace-1"}
    first = await client.post("/v1/jobs", headers=key, **_json())
    again = await client.post("/v1/jobs", headers=key, **_json())
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    other_prompt = await client.post("/v1/jobs", headers=key, **_json(prompt="Moth"))
    other_mask = await client.post(
        "/v1/jobs", headers=key, **_json(mask=_b64(make_png(40, 30, (0, 0, 0))))
    )
    assert other_prompt.status_code == other_mask.status_code == 409


async def test_a_retry_asks_the_same_replace(app: tuple[Runtime, httpx.AsyncClient]) -> None:
    runtime, client = app
    answer = await client.post("/v1/jobs", **_multipart())
    job = await runtime.store.get_job(answer.json()["id"])
    assert job is not None
    again = await runtime.orchestrator.intake.create_retry(job)
    assert again.retry_of == job.id
    assert (again.operation, again.prompt, again.mask_key, again.input_key) == (
        Operation.REPLACE,
        "Butterfly",
        job.mask_key,
        job.input_key,
    )
    assert (again.input_width, again.input_height) == (40, 30)


async def test_a_replace_jobs_events_carry_its_operation_and_prompt(
    app: tuple[Runtime, httpx.AsyncClient],
) -> None:
    import json

    import jsonschema

    from tests.unit.test_layers import ROOT

    _, client = app
    job = (await client.post("/v1/jobs", **_multipart())).json()
    events = (await client.get("/v1/events")).json()["events"]
    [queued] = [e for e in events if e["data"]["id"] == job["id"]]
    assert (queued["data"]["operation"], queued["data"]["prompt"]) == ("replace", "Butterfly")
    schema = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
    jsonschema.validate({k: v for k, v in queued.items() if k != "id"}, schema)


async def test_providers_list_the_operations_each_offers(
    app: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = app
    listed = (await client.get("/v1/providers")).json()["providers"]
    operations = {p["name"]: p["operations"] for p in listed}
    assert operations["fotor"] == ["replace", "upscale"]
    assert operations["upsampler"] == ["upscale"]
