"""Setup shared by the provider adapter and sandbox tests.

Two ways to put an adapter on a wire, one per tier:

- against a script: :class:`Recorder` behind ``httpx.MockTransport``
  (:func:`recorded_client`), which records every request and fails on any host
  it was not told about; :func:`answering` and :func:`raising` script answers;
- against the sandbox: the standalone sandbox app over ``httpx.ASGITransport``
  (:func:`sandbox_over_asgi`) or under uvicorn on 127.0.0.1
  (:func:`real_sandbox`), and :func:`sandbox_adapter`, the production adapter
  of any provider with only its URLs pointed at that sandbox.

:class:`Receiver` serves input images and records webhook deliveries on
127.0.0.1, so no traffic leaves the machine.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.fetch.allowlist import AllowList
from orchestrator.providers.artnex import ArtnexProvider
from orchestrator.providers.fotor import FotorProvider
from orchestrator.providers.photio import PhotioProvider
from orchestrator.providers.registry import SANDBOX_PATHS
from orchestrator.providers.upsampler import UpsamplerProvider
from orchestrator.sandbox.app import standalone_app
from orchestrator.sandbox.context import SandboxContext

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
P = TypeVar("P", FotorProvider, UpsamplerProvider, PhotioProvider, ArtnexProvider)

# The sandbox's guarded client reaches this test's own servers only because they are allowed.
LOOPBACK = AllowList.parse("127.0.0.1")

# Where the ASGI sandbox answers; the standalone app mounts everything under /sandbox.
SANDBOX_HOST = "http://sandbox.test"
SANDBOX_MOUNT = "/sandbox"

# The keys the adapters send to the sandbox (it accepts any key unless told otherwise).
SANDBOX_KEYS: Mapping[str, str] = {
    "fotor": "test-key",
    "upsampler": "test-key",
    "photio": "pt-test",
    "artnex": "ax-test",
}


def make_png(width: int, height: int, mode: str = "RGB") -> bytes:
    color: Any = (200, 30, 60, 128)[: len(mode)] if mode in ("RGB", "RGBA") else 7
    image = Image.new(mode, (width, height), color)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# --- adapters against a script ---------------------------------------------------------


class Recorder:
    """A transport handler that records requests and answers from a script.

    ``answer`` is the current script (``default`` until a test replaces it); a
    request to a host not in ``hosts`` fails the test.
    """

    def __init__(self, hosts: Collection[str], default: Handler) -> None:
        self.hosts = frozenset(hosts)
        self.requests: list[httpx.Request] = []
        self.answer: Handler = default

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host not in self.hosts:
            raise AssertionError(f"unexpected host {request.url.host}")
        await request.aread()
        self.requests.append(request)
        return await self.answer(request)


@asynccontextmanager
async def recorded_client(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose every request goes to ``recorder``."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        yield client


def raising(exc_type: type[Exception]) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)  # type: ignore[call-arg]

    return handler


def answering(status: int, **kwargs: Any) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, **kwargs)

    return handler


# --- local servers ---------------------------------------------------------------------


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free 127.0.0.1 port; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped during startup")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Receiver:
    """Serves input images by name and records webhook deliveries (time, raw body).

    ``hook_codes`` are the answers to give to the next deliveries, in order;
    then 200.
    """

    def __init__(self, images: Mapping[str, bytes], *, media_type: str = "image/png") -> None:
        self.url = ""
        self.images: dict[str, bytes] = dict(images)
        self.media_type = media_type
        self.hook_codes: list[int] = []
        self.deliveries: list[tuple[float, bytes]] = []

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body in self.deliveries]

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.bodies]

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.deliveries.append((time.monotonic(), await request.body()))
            code = self.hook_codes.pop(0) if self.hook_codes else 200
            return Response(b"ok", status_code=code)

        async def image(request: Request) -> Response:
            data = self.images.get(request.path_params["name"])
            if data is None:
                return Response(b"missing", status_code=404)
            return Response(data, media_type=self.media_type)

        return Starlette(
            routes=[
                Route("/hook", hook, methods=["POST"]),
                Route("/images/{name}", image, methods=["GET"]),
            ]
        )

    def image_url(self, name: str = "in.png") -> str:
        return f"{self.url}/images/{name}"

    def __call__(self, name: str) -> str:
        return self.image_url(name)

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """The bodies once ``count`` deliveries arrived; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} callbacks, got {len(self.deliveries)}")
            await asyncio.sleep(0.01)
        return self.bodies

    async def wait_for_payloads(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """As :meth:`wait_for`, the bodies parsed as JSON."""
        await self.wait_for(count, timeout)
        return self.payloads


@asynccontextmanager
async def receiving(images: Mapping[str, bytes], **kwargs: Any) -> AsyncIterator[Receiver]:
    """A :class:`Receiver` serving ``images``, running under uvicorn."""
    receiver = Receiver(images, **kwargs)
    async with serve(receiver.app()) as url:
        receiver.url = url
        yield receiver


# --- the sandbox -----------------------------------------------------------------------


@asynccontextmanager
async def asgi_sandbox(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI client for ``app`` (at :data:`SANDBOX_HOST`) with its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=SANDBOX_HOST) as c:
            yield c


@asynccontextmanager
async def sandbox_over_asgi(**options: Any) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The standalone sandbox (mounted at /sandbox) over ASGI, its lifespan running."""
    app = standalone_app(**{"allow": LOOPBACK, **options})
    async with asgi_sandbox(app) as client:
        yield app, client


@asynccontextmanager
async def real_sandbox(**options: Any) -> AsyncIterator[tuple[str, Starlette, httpx.AsyncClient]]:
    """The standalone sandbox under uvicorn: yields (base URL incl. /sandbox, app, client)."""
    options.setdefault("callback_backoff_s", 0.01)
    app = standalone_app(**{"allow": LOOPBACK, **options})
    async with serve(app) as url, httpx.AsyncClient(trust_env=False) as client:
        yield f"{url}{SANDBOX_MOUNT}", app, client


def ctx_of(app: Starlette) -> SandboxContext:
    ctx = app.state.sandbox
    assert isinstance(ctx, SandboxContext)
    return ctx


async def settle(app: Starlette) -> None:
    """Wait until the sandbox has no background work left."""
    deadline = time.monotonic() + 5
    while ctx_of(app).pending_tasks:
        assert time.monotonic() < deadline, "sandbox work did not finish"
        await asyncio.sleep(0.01)


def sandbox_adapter(
    kind: type[P], client: httpx.AsyncClient, host: str = SANDBOX_HOST, **overrides: Any
) -> P:
    """The production adapter ``kind`` with only its URLs pointed at the sandbox.

    ``host`` is where the standalone sandbox app is served (the registry's sandbox
    paths apply under it); ``overrides`` replace any constructor argument.
    """
    path = SANDBOX_PATHS[kind.name]
    kwargs: dict[str, Any] = {"base_url": host + path, "api_key": SANDBOX_KEYS[kind.name]}
    if kind is FotorProvider:
        kwargs["s3_base_url"] = f"{host}{path}/s3"
    kwargs.update(overrides)
    return kind(client, **kwargs)
