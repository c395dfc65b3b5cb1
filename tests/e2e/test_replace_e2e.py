"""AI Replace over real HTTP: the service and a standalone sandbox as separate processes.

A replace job sends an image, a mask and a prompt; the result must keep every pixel
the mask leaves alone and change the ones it marks, through Fotor (its account
webhook, polling when the callback is dropped, an early callback) and through the
local provider, which needs no key at all.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.e2e.harness import SECRET, Sandbox, Service

pytestmark = pytest.mark.e2e

SIZE = (48, 32)
HOLE = (12, 8, 30, 22)  # left, top, right, bottom: the area the mask marks


def _photo() -> bytes:
    """A gradient, so that a pixel left alone can be told from one repainted."""
    image = Image.new("RGB", SIZE)
    image.putdata(
        [(x * 5 % 256, y * 7 % 256, (x + y) * 3 % 256) for y in range(32) for x in range(48)]
    )
    return _png(image)


def _mask() -> bytes:
    mask = Image.new("L", SIZE, 0)
    mask.paste(255, HOLE)
    return _png(mask)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _inside(x: int, y: int) -> bool:
    left, top, right, bottom = HOLE
    return left <= x < right and top <= y < bottom


def _submit_replace(service: Service, provider: str, prompt: str = "Butterfly") -> dict[str, Any]:
    response = service.client.post(
        "/v1/jobs",
        data={"provider": provider, "operation": "replace", "prompt": prompt},
        files={
            "image": ("photo.png", _photo(), "image/png"),
            "mask": ("mask.png", _mask(), "image/png"),
        },
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["operation"] == "replace" and job["prompt"] == prompt
    return job


def _check_result(service: Service, job_id: str) -> None:
    done = service.wait([job_id])[job_id]
    assert done["state"] == "succeeded", done
    assert (done["result"]["width"], done["result"]["height"]) == SIZE
    response = service.client.get(f"/v1/jobs/{job_id}/result")
    assert response.status_code == 200
    result = Image.open(io.BytesIO(response.content)).convert("RGB")
    original = Image.open(io.BytesIO(_photo())).convert("RGB")
    assert result.size == SIZE
    changed_inside = kept_outside = outside = 0
    for y in range(SIZE[1]):
        for x in range(SIZE[0]):
            same = result.getpixel((x, y)) == original.getpixel((x, y))
            if _inside(x, y):
                changed_inside += not same
            else:
                outside += 1
                kept_outside += same
    assert kept_outside == outside, "a pixel outside the mask changed"
    left, top, right, bottom = HOLE
    assert changed_inside > (right - left) * (bottom - top) // 2, "the masked area barely changed"


@pytest.fixture
def fotor(service: Service, sandbox: Sandbox) -> Service:
    """The service with its account webhook registered at the (sandbox) Fotor account."""
    token = CallbackSigner([Secret(SECRET)], SystemClock()).for_account("fotor")
    url = f"{service.base}/callbacks/fotor/{token}"
    sandbox.client.put("/fotor/webhook", json={"url": url}).raise_for_status()
    return service


def test_a_replace_job_succeeds_through_the_fotor_account_webhook(
    fotor: Service, sandbox: Sandbox
) -> None:
    job = _submit_replace(fotor, "fotor")
    _check_result(fotor, job["id"])
    assert sandbox.stats("fotor")["callbacks_sent"] >= 1
    listed = fotor.client.get("/v1/jobs", params={"operation": "replace"}).json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert fotor.client.get("/v1/jobs", params={"operation": "upscale"}).json()["jobs"] == []


def test_a_replace_job_ends_through_polling_when_fotor_drops_the_callback(
    fotor: Service, sandbox: Sandbox
) -> None:
    sandbox.faults(drop_callback=1)
    job = _submit_replace(fotor, "fotor")
    _check_result(fotor, job["id"])
    assert sandbox.stats("fotor")["status_calls"] >= 1


def test_a_replace_job_binds_an_early_fotor_callback(fotor: Service, sandbox: Sandbox) -> None:
    sandbox.faults(early_callback=1)
    job = _submit_replace(fotor, "fotor")
    _check_result(fotor, job["id"])
    assert sandbox.stats("fotor")["early_callbacks"] == 1


def test_another_prompt_paints_another_fotor_result(
    fotor: Service,
) -> None:
    ids = [_submit_replace(fotor, "fotor", prompt)["id"] for prompt in ("Butterfly", "Cat")]
    results = []
    for job_id in ids:
        _check_result(fotor, job_id)
        results.append(fotor.job(job_id)["result"]["sha256"])
    assert results[0] != results[1]


def test_a_replace_job_runs_offline_through_the_local_provider(service: Service) -> None:
    job = _submit_replace(service, "local")
    _check_result(service, job["id"])


def test_a_replace_job_for_a_provider_without_replace_is_refused(service: Service) -> None:
    response = service.client.post(
        "/v1/jobs",
        data={"provider": "upsampler", "operation": "replace", "prompt": "Butterfly"},
        files={
            "image": ("photo.png", _photo(), "image/png"),
            "mask": ("mask.png", _mask(), "image/png"),
        },
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "fotor" in message and "local" in message
    assert service.client.get("/v1/jobs").json()["jobs"] == []
