"""Request bodies of the sandbox: capped, and read within a deadline.

The sandbox's handlers read whole bodies (``await request.body()``), as a
provider's JSON API is small. Without a cap a client could make it hold any
amount of memory, and without a deadline one that stops sending would hold its
connection for good (the listener's deadline covers headers only). So the body
is read through a guard: past ``limit`` bytes (declared or received) the answer
is 413, past ``timeout_s`` it is 408, and a client that leaves gets no answer.
The guard acts only when a handler reads: one that refuses first (a wrong key)
reads nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimits:
    def __init__(self, app: ASGIApp, *, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _Refused(413, f"request body is larger than {self.limit} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _answer(send, too_large)
                return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        received = 0
        complete = False
        started = False

        async def guarded_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body: a disconnect, whenever it comes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _Refused(408, "the request body did not arrive in time") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise too_large
                complete = not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, watched_send)
        except _Refused as exc:
            log.debug("sandbox request refused: %s", exc.message)
            if not started:
                await _answer(send, exc)


async def _answer(send: Send, refusal: _Refused) -> None:
    body = json.dumps({"error": refusal.message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
