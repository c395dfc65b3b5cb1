"""Request helpers every sandbox provider shares: URL and key checks, a hanging answer."""

from __future__ import annotations

import asyncio
from typing import TypeGuard

from starlette.requests import Request


def is_http_url(value: object) -> TypeGuard[str]:
    """True for an ``http://`` or ``https://`` URL with something after the scheme."""
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) > 8


def bearer_key(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; ``None`` when there is none."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    return key


async def sleep_unless_disconnected(request: Request, seconds: float) -> None:
    """Sleep ``seconds``, returning early if the client goes away."""

    async def wait_for_disconnect() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    tasks = [
        asyncio.ensure_future(asyncio.sleep(seconds)),
        asyncio.ensure_future(wait_for_disconnect()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
