"""ResultFetcher against real HTTP servers on 127.0.0.1.

Two uvicorn servers run in-process: ``origin`` is in the allow list,
``forbidden`` is not (it is loopback, so the guard must refuse it). Every
request each server sees is recorded, so "refused" can be checked as "the
server saw nothing". No traffic goes anywhere but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import ipaddress
import logging
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import uvicorn
from PIL import Image

from orchestrator.fetch.addresses import IPAddress
from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.fetch.transport import GuardedBackend, make_guarded_client
from orchestrator.results.storage import LocalResultStorage
from schemas.errors import FetchTransient, ForbiddenURL, ResultExpired, ResultInvalid

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BYTES = 256 * 1024
MAX_PIXELS = 4_000_000
BACKOFF = 0.5


# --------------------------------------------------------------------------- images


def make_image(fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color=(10, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes whose header claims a huge 1-bit image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + png_chunk(b"IEND", b"")
    )


PNG = make_image("PNG")


# --------------------------------------------------------------------------- server


def respond(
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    chunks: list[bytes] | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
) -> Handler:
    """A handler answering ``body`` (or ``chunks`` without Content-Length)."""

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        if delay:
            await asyncio.sleep(delay)
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if chunks is None and "content-length" not in (headers or {}):
            raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        if chunks is None:
            await send({"type": "http.response.body", "body": body})
            return
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        await send({"type": "http.response.body", "body": b""})

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    return respond(status, headers={"location": location})


def in_turn(*handlers: Handler) -> Handler:
    """The n-th request gets the n-th handler; the last one repeats."""
    calls = 0

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        chosen = handlers[min(calls, len(handlers) - 1)]
        calls += 1
        await chosen(scope, receive, send)

    return handler


class App:
    """A tiny ASGI app: path -> handler, recording every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[str] = []
        self.hosts: list[str] = []
        self.url = ""
        self.port = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.requests.append(scope["path"])
        self.hosts.append(dict(scope["headers"]).get(b"host", b"").decode())
        handler = self.routes.get(scope["path"], respond(404, b"no such route"))
        await handler(scope, receive, send)


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[App]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    app.port = sock.getsockname()[1]
    app.url = f"http://127.0.0.1:{app.port}"
    config = uvicorn.Config(
        app,
        lifespan="off",
        http="h11",
        ws="none",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.01)
        yield app
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def origin() -> AsyncIterator[App]:
    async with serving(App()) as app:
        yield app


@pytest.fixture
async def forbidden() -> AsyncIterator[App]:
    async with serving(App()) as app:
        app.routes["/img.png"] = respond(200, PNG)
        yield app


# --------------------------------------------------------------------------- fetcher


@pytest.fixture
def storage(tmp_path: Path) -> LocalResultStorage:
    return LocalResultStorage(tmp_path / "results")


@pytest.fixture
async def client(origin: App) -> AsyncIterator[httpx.AsyncClient]:
    allow = AllowList.parse(f"127.0.0.1:{origin.port}")
    async with make_guarded_client(allow, timeout=httpx.Timeout(2.0)) as client:
        yield client


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def fetcher(
    client: httpx.AsyncClient, storage: LocalResultStorage, sleeps: list[float]
) -> AsyncIterator[ResultFetcher]:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    yield ResultFetcher(
        client,
        storage,
        storage.tmp_dir,
        max_bytes=MAX_BYTES,
        max_pixels=MAX_PIXELS,
        retries=2,
        backoff_s=BACKOFF,
        sleep=fake_sleep,
    )
    assert temp_files(storage) == [], "a temporary file was left behind"


def temp_files(storage: LocalResultStorage) -> list[Path]:
    return sorted(storage.tmp_dir.iterdir())


def stored_files(storage: LocalResultStorage) -> list[str]:
    return sorted(p.name for p in storage.root.iterdir() if p.is_file())


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize(
    ("fmt", "ext", "content_type"),
    [("PNG", "png", "image/png"), ("JPEG", "jpg", "image/jpeg"), ("WEBP", "webp", "image/webp")],
)
async def test_fetch_stores_checked_image(
    origin: App,
    fetcher: ResultFetcher,
    storage: LocalResultStorage,
    fmt: str,
    ext: str,
    content_type: str,
) -> None:
    body = make_image(fmt, (120, 80))
    origin.routes["/result"] = respond(200, body, {"content-type": "application/octet-stream"})

    info = await fetcher.fetch(f"{origin.url}/result?sig=abc", "job_123")

    assert info.key == f"job_123.{ext}"
    assert info.format == fmt.lower()
    assert info.content_type == content_type
    assert (info.width, info.height) == (120, 80)
    assert info.bytes == len(body)
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    path = storage.path_for(info.key)
    assert path.read_bytes() == body
    assert await storage.exists(info.key)
    with await storage.open(info.key) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == info.sha256
    assert stored_files(storage) == [info.key]
    assert temp_files(storage) == []


async def test_chunked_body_is_streamed_and_hashed(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    body = make_image("PNG", (300, 200))
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]  # tiny chunks, sniff spans them
    origin.routes["/chunked"] = respond(200, chunks=pieces)

    info = await fetcher.fetch(f"{origin.url}/chunked", "job_chunked")

    assert info.sha256 == hashlib.sha256(body).hexdigest()
    assert storage.path_for(info.key).read_bytes() == body


async def test_refetch_replaces_the_stored_file(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    first, second = make_image("PNG", (10, 10)), make_image("PNG", (20, 20))
    origin.routes["/r"] = in_turn(respond(200, first), respond(200, second))
    await fetcher.fetch(f"{origin.url}/r", "job_1")
    info = await fetcher.fetch(f"{origin.url}/r", "job_1")
    assert (info.width, info.height) == (20, 20)
    assert storage.path_for("job_1.png").read_bytes() == second


async def test_logs_host_but_never_the_signed_query(
    origin: App, fetcher: ResultFetcher, caplog: pytest.LogCaptureFixture
) -> None:
    origin.routes["/hop"] = redirect("/result?X-Amz-Signature=topsecret2")
    origin.routes["/result"] = in_turn(respond(503), respond(200, PNG))
    caplog.set_level(logging.DEBUG, logger="orchestrator")

    await fetcher.fetch(f"{origin.url}/hop?X-Amz-Signature=topsecret1", "job_log")

    assert "127.0.0.1" in caplog.text
    assert "topsecret" not in caplog.text
    assert "Signature" not in caplog.text


# --------------------------------------------------------------------------- refusals


async def test_loopback_port_not_in_allow_list_is_refused_without_a_request(
    origin: App, forbidden: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    with pytest.raises(ForbiddenURL):
        await fetcher.fetch(f"{forbidden.url}/img.png", "job_x")
    assert forbidden.requests == []
    assert origin.requests == []
    assert stored_files(storage) == []


async def test_redirect_from_allowed_to_forbidden_host_is_refused(
    origin: App, forbidden: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    origin.routes["/hop"] = redirect(f"{forbidden.url}/img.png")
    with pytest.raises(ForbiddenURL):
        await fetcher.fetch(f"{origin.url}/hop", "job_x")
    assert origin.requests == ["/hop"]
    assert forbidden.requests == []
    assert stored_files(storage) == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/result.png",
        "gopher://127.0.0.1:70/",
        "data:image/png;base64,iVBORw0KGgo=",
        "/relative/path.png",
        "http:///no-host.png",
        "not a url at all",
    ],
)
async def test_non_http_urls_are_refused_without_a_request(
    origin: App, fetcher: ResultFetcher, url: str
) -> None:
    with pytest.raises(ForbiddenURL):
        await fetcher.fetch(url, "job_x")
    assert origin.requests == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.png"])
async def test_redirect_to_non_http_scheme_is_refused(
    origin: App, fetcher: ResultFetcher, location: str
) -> None:
    origin.routes["/hop"] = redirect(location, 301)
    with pytest.raises(ForbiddenURL):
        await fetcher.fetch(f"{origin.url}/hop", "job_x")
    assert origin.requests == ["/hop"]


async def test_redirects_are_followed_up_to_five(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    for n in range(5):
        origin.routes[f"/r{n}"] = redirect(f"{origin.url}/r{n + 1}" if n % 2 else f"/r{n + 1}")
    origin.routes["/r5"] = respond(200, PNG)
    info = await fetcher.fetch(f"{origin.url}/r0", "job_r")
    assert info.key == "job_r.png"
    assert origin.requests == [f"/r{n}" for n in range(6)]


async def test_too_many_redirects(origin: App, fetcher: ResultFetcher) -> None:
    origin.routes["/loop"] = redirect("/loop", 307)
    with pytest.raises(ResultInvalid, match="redirects"):
        await fetcher.fetch(f"{origin.url}/loop", "job_x")
    assert len(origin.requests) == 6  # the first request and five redirects


async def test_redirect_without_location(origin: App, fetcher: ResultFetcher) -> None:
    origin.routes["/hop"] = respond(302)
    with pytest.raises(ResultInvalid, match="Location"):
        await fetcher.fetch(f"{origin.url}/hop", "job_x")


async def test_key_with_path_separator_is_rejected_before_any_request(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    origin.routes["/img.png"] = respond(200, PNG)
    for stem in ("../evil", "a/b", "a\\b", ".hidden", ""):
        with pytest.raises(ValueError):
            await fetcher.fetch(f"{origin.url}/img.png", stem)
        with pytest.raises(ValueError):
            await fetcher.store_bytes(PNG, stem)
    assert origin.requests == []
    with pytest.raises(ValueError):
        storage.path_for("../x.png")


# --------------------------------------------------------------------------- bad bodies


async def test_declared_oversized_body_is_refused_before_reading(
    origin: App, fetcher: ResultFetcher
) -> None:
    origin.routes["/big"] = respond(200, PNG, {"content-length": str(MAX_BYTES + 1)})
    with pytest.raises(ResultInvalid, match="over the cap"):
        await fetcher.fetch(f"{origin.url}/big", "job_x")


async def test_streamed_oversized_body_is_aborted(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    chunk = PNG[:16] + b"\x00" * (32 * 1024 - 16)
    origin.routes["/big"] = respond(200, chunks=[chunk] * ((MAX_BYTES // len(chunk)) + 4))
    with pytest.raises(ResultInvalid, match="exceeds the cap"):
        await fetcher.fetch(f"{origin.url}/big", "job_x")
    assert stored_files(storage) == []


@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\n" + b"\xde\xad\xbe\xef" * 100,
        PNG[: len(PNG) // 2],
        b"<html><body>Access denied</body></html>",
        b"",
    ],
    ids=["png-magic-then-garbage", "truncated-png", "html", "empty"],
)
async def test_corrupt_body_is_invalid(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage, body: bytes
) -> None:
    origin.routes["/bad"] = respond(200, body)
    with pytest.raises(ResultInvalid):
        await fetcher.fetch(f"{origin.url}/bad", "job_x")
    assert len(origin.requests) == 1  # not retried
    assert stored_files(storage) == []


async def test_decompression_bomb_is_invalid(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    bomb = png_bomb()
    assert len(bomb) < 1024
    origin.routes["/bomb"] = respond(200, bomb)
    with pytest.raises(ResultInvalid, match="100000x100000"):
        await fetcher.fetch(f"{origin.url}/bomb", "job_x")
    assert stored_files(storage) == []


async def test_image_over_pixel_limit_is_invalid(origin: App, fetcher: ResultFetcher) -> None:
    origin.routes["/wide"] = respond(200, make_image("PNG", (4001, 1000)))
    with pytest.raises(ResultInvalid, match="exceeds the limit"):
        await fetcher.fetch(f"{origin.url}/wide", "job_x")


async def test_compressed_content_encoding_is_refused(origin: App, fetcher: ResultFetcher) -> None:
    origin.routes["/gz"] = respond(200, zlib.compress(PNG), {"content-encoding": "deflate"})
    with pytest.raises(ResultInvalid, match="Content-Encoding"):
        await fetcher.fetch(f"{origin.url}/gz", "job_x")


# --------------------------------------------------------------------------- statuses, retries


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_expired_statuses(
    origin: App, fetcher: ResultFetcher, sleeps: list[float], status: int
) -> None:
    origin.routes["/old"] = respond(status, b"expired")
    with pytest.raises(ResultExpired):
        await fetcher.fetch(f"{origin.url}/old", "job_x")
    assert origin.requests == ["/old"]
    assert sleeps == []


@pytest.mark.parametrize("status", [400, 401, 418, 204, 304])
async def test_other_statuses_are_invalid_and_final(
    origin: App, fetcher: ResultFetcher, status: int
) -> None:
    origin.routes["/odd"] = respond(status)
    with pytest.raises(ResultInvalid, match=str(status)):
        await fetcher.fetch(f"{origin.url}/odd", "job_x")
    assert origin.requests == ["/odd"]


async def test_two_500s_then_success(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage, sleeps: list[float]
) -> None:
    origin.routes["/flaky"] = in_turn(respond(500), respond(500), respond(200, PNG))
    info = await fetcher.fetch(f"{origin.url}/flaky", "job_flaky")
    assert info.key == "job_flaky.png"
    assert origin.requests == ["/flaky"] * 3
    assert sleeps == [BACKOFF, 2 * BACKOFF]
    assert stored_files(storage) == ["job_flaky.png"]


async def test_persistent_5xx_becomes_fetch_transient(
    origin: App, fetcher: ResultFetcher, sleeps: list[float]
) -> None:
    origin.routes["/down"] = respond(502)
    with pytest.raises(FetchTransient, match="3 attempts") as info:
        await fetcher.fetch(f"{origin.url}/down", "job_x")
    assert info.value.retryable
    assert origin.requests == ["/down"] * 3
    assert len(sleeps) == 2


async def test_429_honours_retry_after(
    origin: App, fetcher: ResultFetcher, sleeps: list[float]
) -> None:
    origin.routes["/busy"] = in_turn(respond(429, headers={"retry-after": "3"}), respond(200, PNG))
    await fetcher.fetch(f"{origin.url}/busy", "job_busy")
    assert sleeps == [3.0]


async def test_read_timeout_is_retried_then_transient(
    origin: App, storage: LocalResultStorage, sleeps: list[float]
) -> None:
    origin.routes["/slow"] = respond(200, PNG, delay=0.5)
    allow = AllowList.parse(f"127.0.0.1:{origin.port}")
    async with make_guarded_client(allow, timeout=httpx.Timeout(0.1)) as client:

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        fetcher = ResultFetcher(
            client,
            storage,
            storage.tmp_dir,
            max_bytes=MAX_BYTES,
            max_pixels=MAX_PIXELS,
            retries=1,
            sleep=fake_sleep,
        )
        with pytest.raises(FetchTransient, match="timed out"):
            await fetcher.fetch(f"{origin.url}/slow", "job_x")
    assert origin.requests == ["/slow"] * 2
    assert temp_files(storage) == []


async def test_connection_refused_is_transient(
    storage: LocalResultStorage, sleeps: list[float]
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    allow = AllowList.parse(f"127.0.0.1:{port}")
    async with make_guarded_client(allow, timeout=httpx.Timeout(1.0)) as client:

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        fetcher = ResultFetcher(
            client,
            storage,
            storage.tmp_dir,
            max_bytes=MAX_BYTES,
            max_pixels=MAX_PIXELS,
            sleep=fake_sleep,
        )
        with pytest.raises(FetchTransient, match="ConnectError"):
            await fetcher.fetch(f"http://127.0.0.1:{port}/x.png", "job_x")
    assert len(sleeps) == 2


async def test_cancelled_download_leaves_no_temp_file(
    origin: App, fetcher: ResultFetcher, storage: LocalResultStorage
) -> None:
    chunk = PNG[:16] + b"\x00" * 1000
    origin.routes["/drip"] = respond(200, chunks=[chunk] * 50, chunk_delay=0.05)
    task = asyncio.create_task(fetcher.fetch(f"{origin.url}/drip", "job_x"))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if temp_files(storage):
            break
    assert temp_files(storage), "the download never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert temp_files(storage) == []
    assert stored_files(storage) == []


# --------------------------------------------------------------------------- inline results


async def test_store_bytes(fetcher: ResultFetcher, storage: LocalResultStorage) -> None:
    body = make_image("JPEG", (33, 44))
    info = await fetcher.store_bytes(body, "job_inline")
    assert info.key == "job_inline.jpg"
    assert (info.width, info.height, info.bytes) == (33, 44, len(body))
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    assert storage.path_for(info.key).read_bytes() == body


@pytest.mark.parametrize(
    "body",
    [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, png_bomb(), b"\x89PNG" * MAX_BYTES],
    ids=["empty", "text", "corrupt", "bomb", "oversized"],
)
async def test_store_bytes_checks_like_fetch(
    fetcher: ResultFetcher, storage: LocalResultStorage, body: bytes
) -> None:
    with pytest.raises(ResultInvalid):
        await fetcher.store_bytes(body, "job_inline")
    assert stored_files(storage) == []


# --------------------------------------------------------------------------- the transport


async def test_guarded_client_refusal_surfaces_as_forbidden_url(forbidden: App) -> None:
    async with make_guarded_client(AllowList(), timeout=httpx.Timeout(1.0)) as client:
        with pytest.raises(ForbiddenURL):
            await client.get(f"{forbidden.url}/img.png")
        with pytest.raises(ForbiddenURL):
            async with client.stream("GET", f"{forbidden.url}/img.png"):
                pass
    assert forbidden.requests == []


async def test_environment_proxies_do_not_bypass_the_guard(
    forbidden: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"{forbidden.url}")
    monkeypatch.setenv("ALL_PROXY", f"{forbidden.url}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    async with make_guarded_client(AllowList(), timeout=httpx.Timeout(1.0)) as client:
        with pytest.raises(ForbiddenURL):
            await client.get(f"{forbidden.url}/img.png")
    assert forbidden.requests == []


async def test_hostname_entry_and_single_resolution(origin: App) -> None:
    origin.routes["/img.png"] = respond(200, PNG)
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    url = f"http://results.test:{origin.port}/img.png"
    refused = AllowList()
    async with make_guarded_client(refused, timeout=httpx.Timeout(1.0), resolver=resolver) as c:
        with pytest.raises(ForbiddenURL):
            await c.get(url)
    assert origin.requests == []

    allowed = AllowList.parse("results.test")
    async with make_guarded_client(allowed, timeout=httpx.Timeout(1.0), resolver=resolver) as c:
        response = await c.get(url)
        assert response.status_code == 200
        assert response.content == PNG
    assert origin.hosts == [f"results.test:{origin.port}"]  # the name, not the IP
    assert lookups == ["results.test", "results.test"]  # resolved once per connection


async def test_any_forbidden_resolved_address_refuses_the_host(origin: App) -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("127.0.0.2")]

    allow = AllowList.parse(f"127.0.0.1:{origin.port}")
    async with make_guarded_client(allow, timeout=httpx.Timeout(1.0), resolver=resolver) as c:
        with pytest.raises(ForbiddenURL):
            await c.get(f"http://results.test:{origin.port}/img.png")
    assert origin.requests == []


class FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, server_addr: object) -> None:
        self.server_addr = server_addr
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True

    def get_extra_info(self, info: str) -> Any:
        return self.server_addr if info == "server_addr" else None


class FakeBackend(httpcore.AsyncNetworkBackend):
    """Pretends to connect; records where to. No traffic at all."""

    def __init__(self, server_addr: object) -> None:
        self.server_addr = server_addr
        self.connected: list[tuple[str, int]] = []
        self.streams: list[FakeStream] = []

    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        stream = FakeStream(self.server_addr)
        self.streams.append(stream)
        return stream


async def fixed_resolver(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address("127.0.0.1")]


async def test_backend_connects_to_the_checked_ip_not_the_name() -> None:
    inner = FakeBackend(("127.0.0.1", 8080))
    backend = GuardedBackend(AllowList.parse("a.test"), inner=inner, resolver=fixed_resolver)
    stream = await backend.connect_tcp("a.test", 8080, timeout=1.0)
    assert isinstance(stream, FakeStream)
    assert inner.connected == [("127.0.0.1", 8080)]


@pytest.mark.parametrize("peer", [("10.0.0.1", 8080), ("127.0.0.2", 8080), None, "garbage"])
async def test_backend_checks_the_connected_peer(peer: object) -> None:
    inner = FakeBackend(peer)
    backend = GuardedBackend(AllowList.parse("a.test:8080"), inner=inner, resolver=fixed_resolver)
    with pytest.raises(ForbiddenURL):
        await backend.connect_tcp("a.test", 8080, timeout=1.0)
    assert inner.streams[0].closed


async def test_backend_refuses_unix_sockets() -> None:
    backend = GuardedBackend(AllowList(), inner=FakeBackend(None))
    with pytest.raises(ForbiddenURL):
        await backend.connect_unix_socket("/var/run/docker.sock")
