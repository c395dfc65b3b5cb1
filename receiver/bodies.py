"""Reading request bodies with a cap and a deadline, never holding more than the cap in memory.

Every body is read through :func:`body_chunks`: past ``limit`` bytes it is
PayloadTooLarge (413, as soon as the declared or received length passes it),
past the runtime's ``body_timeout_s`` it is BodyTimeout (408: a client that
stops sending holds nothing for long), and a client that goes away mid-body is
ClientGone (logged as one debug line, not as an error).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from schemas.errors import BodyTimeout, ClientGone, PayloadTooLarge, RejectedInput

DEFAULT_BODY_TIMEOUT_S = 60.0


def body_timeout_s(request: Request) -> float:
    """The deadline for reading a body, from the app's runtime settings."""
    runtime = getattr(request.app.state, "runtime", None)
    settings = getattr(runtime, "settings", None)
    return float(getattr(settings, "body_timeout_s", DEFAULT_BODY_TIMEOUT_S))


def declared_length(request: Request, limit: int) -> int | None:
    """The Content-Length, or None; PayloadTooLarge when it already says more than ``limit``."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    try:
        size = int(declared)
    except ValueError:
        raise RejectedInput("invalid Content-Length") from None
    if size > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    return size


async def body_chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, within ``limit`` bytes and the body deadline."""
    declared_length(request, limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body_timeout_s(request)
    chunks = request.stream().__aiter__()
    total = 0
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTimeout("the request body did not arrive in time") from None
        except ClientDisconnect:
            raise ClientGone("the client disconnected before sending its whole body") from None
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        if chunk:
            yield chunk


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes ``limit`` bytes."""
    return b"".join([chunk async for chunk in body_chunks(request, limit)])
