"""The sandbox's body guard, driven as raw ASGI so a test controls every message."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message

from orchestrator.sandbox.app import create_sandbox_app

SUBMIT = "/upsampler/api/v1/smart-upscale"


async def _call(
    messages: list[Message], *, key: str = "k", hang: bool = False, length: int | None = None
) -> tuple[int, dict[str, Any], int]:
    app = create_sandbox_app(api_key="k", body_timeout_s=0.2)
    headers = [(b"authorization", f"Bearer {key}".encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": SUBMIT,
        "raw_path": SUBMIT.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "scheme": "http",
        "server": ("127.0.0.1", 8100),
        "client": ("127.0.0.1", 5000),
        "http_version": "1.1",
    }
    reads = 0
    pending = list(messages)

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        if pending:
            return pending.pop(0)
        if hang:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), reads


async def test_a_wrong_key_is_refused_before_the_body_is_read() -> None:
    status, _, reads = await _call([], key="wrong", hang=True)
    assert (status, reads) == (401, 0)


async def test_a_body_that_stops_coming_is_408() -> None:
    status, body, _ = await _call(
        [{"type": "http.request", "body": b'{"input"', "more_body": True}], hang=True
    )
    assert status == 408 and "in time" in body["error"]


async def test_a_declared_length_over_the_cap_is_413_before_any_read() -> None:
    status, _, reads = await _call([], length=10**12, hang=True)
    assert (status, reads) == (413, 0)


async def test_a_streamed_body_over_the_cap_is_413() -> None:
    chunk = b"a" * (1024 * 1024)
    messages: list[Message] = [{"type": "http.request", "body": chunk, "more_body": True}] * 101
    status, body, reads = await _call(messages)
    assert status == 413 and "larger than" in body["error"]
    assert reads <= 101


async def test_a_body_within_the_limits_reaches_the_handler() -> None:
    payload = json.dumps({"input": {"imageUrl": "not a url"}}).encode()
    status, _, _ = await _call([{"type": "http.request", "body": payload, "more_body": False}])
    assert status == 400  # the handler's own answer to a bad submit
