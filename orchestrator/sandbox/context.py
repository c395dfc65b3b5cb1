"""State shared by every sandbox provider: faults, stats, clock, HTTP client, tasks.

Its client also downloads input images for every provider (:meth:`SandboxContext.download`).
The client is the service's guarded one (``orchestrator/fetch/transport.py``): it
connects to public addresses and to what ``allow`` lists (the sandbox's own origin and
the service's callback origin), nothing else, whatever a caller asks for.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.transport import make_guarded_client
from orchestrator.sandbox.callbacks import CallbackSender
from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.results import ResultStore
from orchestrator.sandbox.stats import Stats
from schemas.errors import ForbiddenURL

logger = logging.getLogger(__name__)

# Scope key holding the root path of the sandbox app (where it is mounted).
ROOT_PATH_KEY = "sandbox.root_path"
# How long a submit with an early callback waits for that callback before answering.
EARLY_ANSWER_WAIT_S = 2.0


class RootPathRecorder:
    """ASGI middleware remembering where the sandbox app is mounted.

    Routes deeper down see a longer ``root_path``; result URLs are built from
    this one so they stay right whatever prefix the sandbox is mounted under.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[ROOT_PATH_KEY] = scope.get("root_path", "")
        await self.app(scope, receive, send)


def sandbox_root_url(request: Request) -> str:
    """Absolute URL of the sandbox app's root, without a trailing slash."""
    root = request.scope.get(ROOT_PATH_KEY)
    if root is None:
        root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return str(request.url.replace(path=root, query="", fragment="")).rstrip("/")


def retry_after_value(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class DownloadFailed(Exception):
    """An input image could not be downloaded.

    ``reason`` is ``HTTP <status>``, the transport error's name or ``forbidden
    address``: for the sandbox's own log only, never for an answer, since it tells
    what an address answered. ``too_large`` means the image went over the size limit.
    """

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


class SandboxContext:
    """Everything the provider modules share. One per sandbox app."""

    def __init__(
        self,
        *,
        faults: Faults,
        stats: Stats,
        rng: random.Random,
        clock: Callable[[], float],
        api_key: str | None = None,
        allow: AllowList | None = None,
        control_tokens: tuple[str, ...] | None = None,
        callback_backoff_s: float = 0.5,
        result_ttl_s: float = 3 * 3600.0,
        max_output_pixels: int = 50_000_000,
        max_input_bytes: int = 50 * 1024 * 1024,
        download_timeout_s: float = 30.0,
    ) -> None:
        self.faults = faults
        # One provider's own faults, when set (``PUT /faults/{provider}``): its
        # submits and status calls roll these instead of the shared ones.
        self.provider_faults: dict[str, Faults] = {}
        self.stats = stats
        self.rng = rng
        self.clock = clock
        self.api_key = api_key
        self.allow = allow if allow is not None else AllowList()
        self.control_tokens = control_tokens
        self.max_output_pixels = max_output_pixels
        self.max_input_bytes = max_input_bytes
        self.download_timeout_s = download_timeout_s
        self.results = ResultStore(clock=clock, rng=rng, stats=stats, ttl_s=result_ttl_s)
        self.callbacks = CallbackSender(
            client=self.client, faults=faults, stats=stats, rng=rng, backoff_s=callback_backoff_s
        )
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def faults_for(self, provider: str) -> Faults:
        """The faults ``provider``'s submit and status calls roll."""
        return self.provider_faults.get(provider, self.faults)

    def client(self) -> httpx.AsyncClient:
        """The HTTP client for downloads and callbacks (created on first use)."""
        if self._client is None or self._client.is_closed:
            self._client = make_guarded_client(
                self.allow, timeout=httpx.Timeout(self.download_timeout_s, connect=10.0)
            )
        return self._client

    def accepts_key(self, key: str) -> bool:
        """True for a non-empty key: any when the sandbox has none, else only its own."""
        expected = self.api_key
        if not key:
            return False
        return expected is None or hmac.compare_digest(key.encode(), expected.encode())

    async def download(self, url: str, limit: int) -> bytes:
        """The body of ``GET url`` (redirects followed), at most ``limit`` bytes.

        Raises :class:`DownloadFailed` for an answer other than 200, a body over
        ``limit``, any transport error and an address the guard refuses (on any hop).
        """
        try:
            async with self.client().stream(
                "GET", url, timeout=self.download_timeout_s, follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    raise DownloadFailed(f"HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise DownloadFailed(f"larger than {limit} bytes", too_large=True)
                    chunks.append(chunk)
        except ForbiddenURL:
            raise DownloadFailed("forbidden address") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DownloadFailed(type(exc).__name__) from None
        return b"".join(chunks)

    def new_id(self, nbytes: int = 8) -> str:
        return f"{self.rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
        """Run ``coro`` in the background; kept referenced until it ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def run_before_answer(
        self, coro: Coroutine[Any, Any, None], name: str | None = None
    ) -> None:
        """Run ``coro`` (an early callback's whole job) before the submit is answered,
        but answer after ``EARLY_ANSWER_WAIT_S`` at most: a provider that calls back
        early still answers its submit, even when the callback's delivery is slow
        (a receiver answering 503, retries); the rest goes on in the background."""
        task = self.spawn(coro, name=name)
        await asyncio.wait({task}, timeout=EARLY_ANSWER_WAIT_S)

    @property
    def pending_tasks(self) -> int:
        return len(self._tasks)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("sandbox background task failed", exc_info=task.exception())

    async def aclose(self) -> None:
        """Cancel background work and close the HTTP client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
