"""The last line: anything no handler expected becomes one logged 500 with a request id.

Sits outside the app's own exception handlers, so it only sees what they did
not turn into an answer. It logs one line with the traceback, the method and the
route template (never the raw path, which may hold a callback token, and never
the body), and answers the error envelope with an ``X-Request-Id`` that ties the
answer to that line. It does not re-raise: the server would log a second
traceback.
"""

from __future__ import annotations

import json
import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


def new_request_id() -> str:
    return secrets.token_hex(8)


def internal_error_body(request_id: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "internal_error",
                "message": f"unexpected error; quote request id {request_id}",
                "request_id": request_id,
            }
        },
        separators=(",", ":"),
    ).encode()


class UnexpectedErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            request_id = new_request_id()
            route = getattr(scope.get("route"), "path", "?")
            log.exception(
                "request.failed",
                extra={
                    "action": "internal_error",
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "route": route,
                    "response_started": started,
                },
            )
            if started:
                return  # too late for an answer; the server closes the connection
            body = internal_error_body(request_id)
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
