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
from typing import TYPE_CHECKING, Any

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


def guarded(header_timeout_s: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a deadline and a size cap on each request's headers.

    The deadline runs from the moment the connection is ready for a request (it
    opened, or the previous response went out) until the request's headers are
    complete; the request's body, and the wait for the app's answer, are not
    counted.
    """
    base: Any = _base_protocol()

    class GuardedProtocol(base):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _refused = False
        _waiting_for: object = None

        def send_400_response(self, msg: str) -> None:
            self._headers_done()
            self.transport.write(_BAD_REQUEST)
            self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._await_headers()

        # httptools' callbacks (h11 limits the size of headers itself).
        def on_message_begin(self) -> None:
            self._header_bytes = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_header_bytes(len(url))
            if not self._refused:
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_header_bytes(len(name) + len(value) + 4)
            if not self._refused:
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if not self._refused:  # a refused request never reaches the app
                super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def _count_header_bytes(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > max_header_bytes and not self._refused:
                self._refused = True
                self._headers_done()
                self.transport.write(_HEADERS_TOO_LARGE)
                # Read and drop what is still coming for a moment before closing, so
                # that the client reads the answer rather than a connection reset.
                self.loop.call_later(LINGER_S, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._waiting_for:
                self._headers_done()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._idle():
                # Ready for the next request on this connection (or the rest of a body
                # the app did not read): it gets the same deadline as the first.
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_done()
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            self._headers_done()
            self._waiting_for = self.cycle
            self._header_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _idle(self) -> bool:
            """No request is being handled (a pipelined one would be in ``cycle``)."""
            return self.cycle is None or bool(self.cycle.response_complete)

        def _headers_done(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is self._waiting_for and self._idle() and not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol


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
    return uvicorn.Server(config)
