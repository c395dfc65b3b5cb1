"""Request bodies of the sandbox: capped and read within a deadline, before any route.

The sandbox's handlers read whole bodies (``await request.body()``), as a
provider's JSON API is small. Without a cap a client could make it hold any
amount of memory, and without a deadline one that stops sending would hold its
connection for good (the listener's deadline covers headers only). So the body
is read here first: past ``limit`` bytes (declared or received) the answer is
413, past ``timeout_s`` it is 408, and a client that leaves gets no answer. The
route then reads the body from memory as usual.
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


class _Gone(Exception):
    pass


class BodyLimits:
    def __init__(self, app: ASGIApp, *, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
        except _Gone:
            log.debug("sandbox request abandoned mid-body")
            return
        except _Refused as exc:
            log.debug("sandbox request refused: %s", exc.message)
            answer = json.dumps({"error": exc.message}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(answer)),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": answer})
            return
        given = False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # what comes after the body: a disconnect

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        too_large = _Refused(413, f"request body is larger than {self.limit} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                raise too_large
        chunks: list[bytes] = []
        total = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        raise _Gone
                    chunk: bytes = message.get("body", b"")
                    total += len(chunk)
                    if total > self.limit:
                        raise too_large
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(408, "the request body did not arrive in time") from None
