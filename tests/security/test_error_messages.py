"""Failure messages a client reads never carry Python's reprs of our objects."""

from __future__ import annotations

import base64

import httpx
import pytest

from orchestrator.sandbox.app import standalone_app
from orchestrator.sandbox.imaging import upscale_image, upscale_image_variants

JUNK = b"this is not an image at all"


async def test_photio_sandbox_says_why_without_a_repr() -> None:
    app = standalone_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            answer = await client.post(
                "/sandbox/photio/v1/inference/upscale",
                json={"image": base64.b64encode(JUNK).decode()},
                headers={"X-Photio-Key": "pt-test"},
            )
    assert answer.status_code == 400
    message = answer.json()["body"]
    assert "not a readable image" in message
    assert "object at 0x" not in message and "BytesIO" not in message


@pytest.mark.parametrize("upscale", [upscale_image, upscale_image_variants])
def test_sandbox_upscaling_says_why_without_a_repr(upscale: object) -> None:
    assert callable(upscale)
    with pytest.raises(ValueError, match="not a readable image") as info:
        upscale(JUNK, 2.0, 10_000_000)
    assert "object at 0x" not in str(info.value)
