"""The listener's guard on request headers, driven byte by byte: however a client splits
what it sends, a request within the header cap reaches the app and one past it is
answered 431 without reaching it."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import uvicorn
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from orchestrator.service.listener import PIECE, guarded

# The count is exact to within one piece either way: headers up to the cap less a piece
# always pass, headers past the cap and a piece are always refused.
CAP = 2 * PIECE


class Transport(asyncio.Transport):
    """What the server wrote and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        peers = {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}
        return peers.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class App:
    """Answers 200 with the length of the body it read; remembers the header sizes it saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.seen.append(sum(len(n) + len(v) for n, v in scope["headers"]))
        answer = b"%d" % len(body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(answer))],
            }
        )
        await send({"type": "http.response.body", "body": answer})


def _request(size: int, body: bytes) -> bytes:
    """A request whose request line and headers take exactly ``size`` bytes."""
    head = b"POST /callbacks/p/t HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
    headers = head + b"X-Filler: " + b"a" * (size - len(head) - 14) + b"\r\n\r\n"
    assert len(headers) == size
    return headers + body


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def _serve(chunks: list[bytes]) -> tuple[App, Transport]:
    app = App()
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    config.load()
    protocol_class: Any = guarded(10.0, CAP)
    protocol = protocol_class(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = Transport()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return app, transport


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(min_value=100, max_value=CAP),
    body=st.binary(max_size=3 * PIECE // 2),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
@example(size=CAP, body=b"{}", cuts=[CAP - 1])
def test_headers_up_to_the_cap_reach_the_app_however_they_are_split(
    size: int, body: bytes, cuts: list[int]
) -> None:
    app, transport = asyncio.run(_serve(_split(_request(size, body), cuts)))
    assert len(app.seen) == 1
    assert bytes(transport.written).startswith(b"HTTP/1.1 200")


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(min_value=100, max_value=CAP - PIECE),
    body=st.binary(max_size=3 * PIECE // 2),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    requests=st.integers(min_value=2, max_value=3),
)
# Large pipelined requests, each beginning in a piece where the one before ends: each
# request's count starts afresh.
@example(size=CAP - PIECE, body=b"", cuts=[], requests=3)
def test_kept_alive_and_pipelined_requests_are_each_counted_afresh(
    size: int, body: bytes, cuts: list[int], requests: int
) -> None:
    # (One that begins in the middle of a piece may be counted up to a piece more.)
    data = _request(size, body) * requests
    app, transport = asyncio.run(_serve(_split(data, cuts)))
    assert len(app.seen) == requests
    assert bytes(transport.written).count(b"HTTP/1.1 200") == requests
    assert b"431" not in bytes(transport.written)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(min_value=CAP + 1, max_value=CAP + 3 * PIECE),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    finished=st.booleans(),
)
@example(size=CAP + 1, cuts=[], finished=True)
@example(size=CAP + 1, cuts=[CAP - 1], finished=True)
def test_headers_past_the_cap_are_answered_431_however_they_are_split(
    size: int, cuts: list[int], finished: bool
) -> None:
    # Finished or not: one header whose value never ends is cut off too.
    data = _request(size, b"{}") if finished else _request(size + 4, b"")[:size]
    app, transport = asyncio.run(_serve(_split(data, cuts)))
    assert app.seen == []
    assert bytes(transport.written).startswith(b"HTTP/1.1 431")


def test_a_request_pipelined_behind_another_is_capped_too() -> None:
    # Sent before the first one's answer, in the same packet: its headers never end.
    first = b"POST /callbacks/p/t HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n{}{}"
    second = b"GET /healthz HTTP/1.1\r\nX-Long: " + b"a" * (CAP + PIECE)
    app, transport = asyncio.run(_serve([first, second[:100], second[100:]]))
    assert app.seen and len(app.seen) == 1
    assert b"HTTP/1.1 431" in bytes(transport.written)
