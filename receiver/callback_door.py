"""``POST /callbacks/{provider}/{token}``, answered in front of the route table: the hot path.

A provider's callback is most of the service's traffic, and a flood of bad ones
is the cheapest attack on it. So it is matched by string operations before
Starlette's middleware, route table and exception handlers, read straight from
the ASGI messages, and answered with prepared bytes; a refusal is an answer, not
a raised exception. Any other request (another method, more or fewer path
segments) goes to the app unchanged.

The steps are those of every callback: cap the body (413 past the limit, without
reading it all; 408 past the body deadline), verify the token before any
database work (a bad, expired or other-provider token gets a 404 that says
nothing more), check the sender's address when the provider has a list (403),
store the raw delivery and commit, then answer 200 (503 if it could not be
committed, so the provider retries). Parsing, matching and applying happen off
the request path. Anything unexpected is one logged 500 with a request id, as
in ``unexpected.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from orchestrator.common.deadlines import Deadlines
from orchestrator.service.runtime import Runtime
from receiver.errors import error_response
from receiver.unexpected import internal_error_body, new_request_id
from schemas.errors import (
    BodyTimeout,
    CallbackSourceRefused,
    ClientGone,
    PayloadTooLarge,
    RejectedInput,
    StoreUnavailable,
    UpscaleError,
)

log = logging.getLogger(__name__)

PREFIX = "/callbacks/"
ROUTE = "/callbacks/{provider}/{token}"

# The headers kept with a delivery, by their name as received (lower case, ASGI).
_KEPT_HEADERS = {
    name.encode("latin-1"): name for name in ("content-type", "user-agent", "x-request-id")
}
_JSON = (b"content-type", b"application/json")
_NOT_FOUND = b'{"error":{"code":"not_found","message":"not found"}}'
_UNAVAILABLE = b'{"error":{"code":"store_unavailable","message":"try again"}}'


def callback_target(scope: Scope) -> tuple[str, str] | None:
    """``(provider, token)`` when the request is a callback POST, else None.

    The same paths as the route ``/callbacks/{provider}/{token}``: two non-empty
    segments without a slash."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(PREFIX):
        return None
    provider, slash, token = path[len(PREFIX) :].partition("/")
    if not slash or not provider or not token or "/" in token:
        return None
    return provider, token


class CallbackDoor:
    """The callback route as a plain ASGI endpoint over one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        rejected = runtime.metrics.callbacks_rejected
        self._bad_token = rejected.labels("bad_token")
        self._too_large = rejected.labels("too_large")
        self._source = rejected.labels("source")
        self._unavailable = rejected.labels("store_unavailable")
        self._deadlines = BodyDeadlines()

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, provider: str, token: str
    ) -> None:
        # The whole answer in one frame: every frame between this task and the
        # commit it awaits is suspended and resumed once more per callback.
        try:
            runtime = self.runtime
            claims = (
                runtime.callback_signer.claims(provider, token)
                if provider in runtime.providers
                else None
            )
            if claims is None:
                self._bad_token.inc()
                log.debug("callback.refused", extra={"action": "not_found", "route": ROUTE})
                await _send(send, 404, _NOT_FOUND)
                return
            client = scope.get("client")
            peer: str | None = client[0] if client else None
            headers: dict[str, str] = {}
            declared: bytes | None = None
            forwarded: list[str] = []
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded.append(value.decode("latin-1"))
                elif name in _KEPT_HEADERS:
                    headers[_KEPT_HEADERS[name]] = value.decode("latin-1")
                elif name == b"content-length":
                    declared = value
            if forwarded:
                # Several lines are one list, in order (RFC 9110): a proxy that adds a line
                # of its own after the client's is read from the right like one that appends.
                headers["x-forwarded-for"] = ", ".join(forwarded)
            if not runtime.sources.allows(provider, peer, headers.get("x-forwarded-for")):
                self._source.inc()
                await _refuse(
                    scope,
                    receive,
                    send,
                    CallbackSourceRefused(f"callback for {provider} from a source not on its list"),
                )
                return
            settings = runtime.settings
            try:
                body = await read_body(
                    receive,
                    declared,
                    settings.max_callback_bytes,
                    settings.body_timeout_s,
                    self._deadlines,
                )
            except UpscaleError as exc:
                if isinstance(exc, PayloadTooLarge):
                    self._too_large.inc()
                await _refuse(scope, receive, send, exc)
                return
            if peer is not None:
                headers["x-peer-address"] = peer
            try:
                delivery_id = await runtime.orchestrator.acknowledge(claims, headers, body)
            except StoreUnavailable:
                self._unavailable.inc()
                # Not stored: make the provider try again rather than lose the event.
                await _send(send, 503, _UNAVAILABLE, ((b"retry-after", b"5"),))
                return
            # Ids are [a-z0-9_]: the answer is formatted directly rather than JSON-encoded.
            await _send(
                send, 200, b'{"received":true,"delivery":"%s"}' % delivery_id.encode("ascii")
            )
        except Exception:
            await _internal_error(scope, send)

    async def route_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same, as the ASGI endpoint of the route table's entry for this path."""
        params = scope["path_params"]
        await self(scope, receive, send, params["provider"], params["token"])


class BodyDeadlines:
    """The body deadline of every callback being read, kept by one timer for all
    (``Deadlines``): a reader past its deadline is cancelled, and then answers 408."""

    TICK_S = 0.5

    def __init__(self) -> None:
        self._deadlines: Deadlines[asyncio.Task[Any]] = Deadlines(
            self.TICK_S, self._cancel, asyncio.Task.get_loop
        )
        self._expired: set[asyncio.Task[Any]] = set()

    def current_task(self) -> asyncio.Task[Any]:
        """The running task, found through the loop of the last one seen (looking the
        running loop up is a system call, getpid)."""
        loop = self._deadlines.loop
        task = asyncio.current_task(loop) if loop else None
        if task is None:
            task = asyncio.current_task()
            if task is None:  # pragma: no cover - an ASGI app always runs in a task
                raise RuntimeError("read_body runs in a task")
        return task

    def start(self, task: asyncio.Task[Any], timeout_s: float) -> None:
        self._deadlines.start(task, task.get_loop(), timeout_s)

    def stop(self, task: asyncio.Task[Any]) -> None:
        self._deadlines.stop(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the deadline cancelled ``task`` (asked once, when it was cancelled)."""
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _cancel(self, task: asyncio.Task[Any]) -> None:
        # Still waiting for its body (it leaves the deadlines when the body is read).
        self._expired.add(task)
        task.cancel()


async def read_body(
    receive: Receive,
    declared: bytes | None,
    limit: int,
    timeout_s: float,
    deadlines: BodyDeadlines,
) -> bytes:
    """The whole body within ``limit`` bytes and ``timeout_s``: PayloadTooLarge as soon
    as the declared or received length passes the limit, BodyTimeout past the
    deadline, ClientGone if the client leaves first."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RejectedInput("invalid Content-Length") from None
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    task = deadlines.current_task()
    deadlines.start(task, timeout_s)
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone("the client disconnected before sending its whole body")
            chunk: bytes = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        task.uncancel()
        raise BodyTimeout("the request body did not arrive in time") from None
    finally:
        deadlines.stop(task)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"%d" % len(body)), _JSON, *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: UpscaleError) -> None:
    """The rare refusals, logged and answered as the app's error handler does."""
    if isinstance(exc, ClientGone):
        log.debug("request.abandoned", extra={"action": exc.code, "route": ROUTE})
    else:
        log.warning(
            "request.rejected",
            extra={
                "action": exc.code,
                "route": ROUTE,
                "status": exc.status_code,
                "error": exc.message,
            },
        )
    await error_response(exc)(scope, receive, send)


async def _internal_error(scope: Scope, send: Send) -> None:
    request_id = new_request_id()
    log.exception(
        "request.failed",
        extra={
            "action": "internal_error",
            "request_id": request_id,
            "method": scope.get("method"),
            "route": ROUTE,
        },
    )
    body = internal_error_body(request_id)
    try:
        await _send(send, 500, body, ((b"x-request-id", request_id.encode()),))
    except Exception:  # the answer had started: the server closes the connection
        return
