"""How ``upscale serve`` and ``upscale sandbox`` listen: the server options, and a
guard against slow clients.

The listener faces the internet, so:

- Forwarded headers are not believed by the server. ``X-Forwarded-For`` is read
  only where it matters, by :class:`orchestrator.security.sources.SourcePolicy`, and only
  from ``UPSCALE_TRUSTED_PROXIES`` (uvicorn's own proxy handling would believe
  any loopback peer).
- uvicorn (0.54) arms no timer on a new connection, and cancels its keep-alive
  timer at the first byte of the next request, so a client that sends nothing,
  or its headers one byte at a time, holds the connection for good; with
  httptools the size of the headers is not limited either. :func:`guarded`
  closes a connection whose request line and headers are not complete within
  ``header_timeout_s``, and answers 431 to headers larger than ``max_header_bytes``.
  Bodies have a deadline of their own in the app (``receiver/bodies.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from orchestrator.common.deadlines import Deadlines
from orchestrator.common.settings import Settings

if TYPE_CHECKING:
    import uvicorn


def _refusal(status: bytes, code: str, message: str) -> bytes:
    """A whole answer, in the error envelope of the app, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    ) + body


_HEADERS_TOO_LARGE = _refusal(
    b"431 Request Header Fields Too Large", "headers_too_large", "request header fields too large"
)
# What the HTTP parser cannot read (a bad Content-Length, method or request line)
# never reaches the app; uvicorn's own answer would be text/plain.
_BAD_REQUEST = _refusal(b"400 Bad Request", "invalid_request", "invalid HTTP request")


# How long a refused connection's input is read and dropped before it is closed.
LINGER_S = 2.0


def _base_protocol() -> type[asyncio.Protocol]:
    """uvicorn's ``http="auto"`` choice: httptools when installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is installed with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


# Bytes handed to the HTTP parser at a time, at most (a quarter of the header cap when
# that is less). The headers' size is counted by the pieces that leave a request's
# headers unfinished; a piece that would take them past the cap is parsed up to it
# first. So headers larger than the cap are always refused, and a request's are
# counted exactly unless it began in the middle of a piece (pipelined behind another
# in the same packet): then they may be counted up to one piece more.
PIECE = 16 * 1024


class _DateHeader:
    """The ``Date`` header of the answers, renewed by the first request of each second."""

    renew_at = 0.0  # (wall clock)

    def renew(self, state: Any, config: Any) -> None:
        now = time.time()
        self.renew_at = math.floor(now) + 1.0
        date = [(b"date", formatdate(now, usegmt=True).encode())] if config.date_header else []
        state.default_headers = date + config.encoded_headers


def guarded(header_timeout_s: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a deadline and a size cap on each request's headers.

    The deadline runs from the moment the connection is ready for a request (it
    opened, or the previous response went out) until the request's headers are
    complete; the request's body, and the wait for the app's answer, are not
    counted. One timer looks after the deadlines of every connection of the
    server (``Deadlines``), when the earliest passes, rather than one timer a
    request.

    It also renews the ``Date`` header of the answers, when a request comes in a
    new second: so the server need not wake every second to do it.

    The size counted is that of the bytes received while a request's headers are
    unfinished (a pipelined request's too), counted as they are parsed rather than
    header by header: a single header whose value never ends is cut off as well.
    """
    base: Any = _base_protocol()
    piece = min(PIECE, max(1024, max_header_bytes // 4))
    # Called as functions rather than through super(): once each a request.
    parse = base.data_received
    response_complete = base.on_response_complete
    # The connections waiting for their headers, swept by one timer for them all.
    waiting: Deadlines[Any] = Deadlines(
        max(0.05, min(1.0, header_timeout_s / 4)),
        lambda late: late.too_slow(),
        lambda connection: connection.loop,
    )
    # Popped from directly: once a request.
    headers_due = waiting.due
    dates = _DateHeader()
    clock = time.time

    class GuardedProtocol(base):  # type: ignore[misc]
        # The bytes of the pieces that left the headers of request ``_counted`` (its
        # scope) unfinished.
        _header_bytes = 0
        _counted: Any = None
        _refused = False
        # The cycle current when the wait for headers began: the headers are complete
        # once uvicorn has made the next one.
        _waiting_for: Any = None

        def send_400_response(self, msg: str) -> None:
            headers_due.pop(self, None)
            self.transport.write(_BAD_REQUEST)
            self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._await_headers()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if clock() >= dates.renew_at:
                dates.renew(self.server_state, self.config)
            if len(data) > piece:
                for at in range(0, len(data), piece):
                    self.data_received(data[at : at + piece])
                    if self._refused or self.transport.is_closing():
                        return
                return
            scope = self.scope
            if scope is self._counted and scope is not None and "method" not in scope:
                room = max_header_bytes - self._header_bytes
                if room < len(data):
                    # Headers that would pass the cap within this piece unless they end
                    # first: parsed up to the cap (refused there if unfinished), then on.
                    self.data_received(data[:room])
                    if not self._refused and not self.transport.is_closing():
                        self.data_received(data[room:])
                    return
            parse(self, data)
            scope = self.scope
            if scope is not None and "method" not in scope:
                # A request has begun and its headers are not finished: counted from the
                # piece it began in (a new request has a new scope).
                if scope is self._counted:
                    self._header_bytes += len(data)
                else:
                    self._counted = scope
                    self._header_bytes = len(data)
                if self._header_bytes >= max_header_bytes:
                    self._refuse_headers()
                    return
            if self._waiting_for is not _DONE and self.cycle is not self._waiting_for:
                self._waiting_for = _DONE
                headers_due.pop(self, None)

        def on_response_complete(self) -> None:
            response_complete(self)
            cycle = self.cycle
            if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
                # Ready for the next request on this connection (or the rest of a body
                # the app did not read): it gets the same deadline as the first.
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            headers_due.pop(self, None)
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            self._waiting_for = self.cycle
            waiting.start(self, self.loop, header_timeout_s)

        def _refuse_headers(self) -> None:
            self._refused = True
            headers_due.pop(self, None)
            self.transport.write(_HEADERS_TOO_LARGE)
            # Read and drop what is still coming for a moment before closing, so
            # that the client reads the answer rather than a connection reset.
            self.loop.call_later(LINGER_S, self.transport.close)

        def too_slow(self) -> None:
            """The deadline passed: closed if still waiting for the same request's headers."""
            cycle = self.cycle
            if (
                cycle is self._waiting_for
                and (cycle is None or cycle.response_complete)
                and not self.transport.is_closing()
            ):
                self.transport.close()

    return GuardedProtocol


# ``_waiting_for`` once the headers awaited have come.
_DONE = object()


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` from the settings."""
    return {
        "http": guarded(settings.header_timeout_s, settings.max_header_bytes),
        "proxy_headers": False,
        "timeout_keep_alive": max(1, math.ceil(settings.keep_alive_timeout_s)),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.limit_concurrency or None,
    }


def server(settings: Settings, app: Any, *, host: str, port: int) -> uvicorn.Server:
    """The uvicorn server for ``app`` on ``host:port``, with the listener options.

    Every command that listens builds its server here, so none of them faces a
    client without the header deadline, the header cap, the connection limit, or
    with uvicorn believing forwarded headers."""
    import uvicorn

    from orchestrator.service.quiet_server import QuietServer

    # No access log: it would write signed callback and input URLs, and it halves
    # the throughput of the callback path.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        lifespan="on",
        **server_options(settings),
    )
    return QuietServer(config)
