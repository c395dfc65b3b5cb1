"""The local provider's server: a small in-process upscaling API.

The service mounts this app at ``/local`` (:data:`LOCAL_MOUNT`) and reaches it
over HTTP through :class:`~orchestrator.providers.local.LocalProvider`, like any
cloud provider: local jobs take the same submit / callback / poll / fetch path.
Upscaling runs in a ``ProcessPoolExecutor`` (``workers`` processes, started with
``spawn``), never on the event loop.

Wire contract (paths relative to the mount point)::

    POST /api/v1/upscale        Authorization: Bearer <api_key>
        {"image_url": str | null, "image_base64": str | null,   exactly one of the two
         "scale": number (1..8), "engine": str | null, "webhook": str | null}
        200 {"id": str, "status": "QUEUED"}
        400 invalid_request | invalid_image | input_too_large | unknown_engine
            | input_unreachable
        401 unauthorized   413 payload_too_large   503 not_ready
        429 busy, with Retry-After: ``max_concurrent_jobs`` jobs are queued or running
    GET /api/v1/jobs/{id}       Authorization: Bearer <api_key>
        200 job payload        404 not_found (unknown, expired, or the server restarted)
    GET /results/{token}.png    the result (no auth: the token is 128 random bits)
        404 unknown or expired (``result_ttl_s`` after the job ended)
    GET /healthz                {"status": "ok", "engines": [...], "workers": n, "active": n}

Every error answer is ``{"error": {"code": str, "message": str}}``. A job payload
(the ``GET`` answer and the webhook body) is::

    {"id": str, "status": "QUEUED" | "RUNNING" | "SUCCEEDED" | "FAILED",
     "engine": str, "scale": number, "result_url": str | null,
     "width": int | null, "height": int | null,
     "error": {"code": str, "message": str} | null}

A FAILED job's ``error.code`` is one of ``invalid_image``, ``input_too_large``
(input errors), ``engine_unavailable``, ``engine_failed``, ``worker_crashed``,
``internal_error``. When a job ends, its payload is POSTed as JSON to ``webhook``,
up to ``callback_attempts`` times with exponential backoff, until a 2xx (a 4xx
other than 408/429 stops the retries). Webhook URLs are never logged: they
carry signed tokens.

The input is checked before the job is accepted: fetched by URL (http(s) only,
at most ``max_input_bytes``) or decoded from base64, then its header is read for
the size (``max_input_pixels``, and the output against ``max_output_pixels``).
The image URL is fetched from this machine without address filtering: the API
key is what keeps this from being an open proxy.

Starlette does not run the lifespan of a mounted app: a host app must enter
``local.router.lifespan_context(local)`` in its own lifespan.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import json
import logging
import math
import multiprocessing
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.transport import make_guarded_client
from orchestrator.local import engines
from orchestrator.private_files import make_private_dir
from schemas.errors import ForbiddenURL, RejectedInput, RejectedPayload, UpscaleError
from schemas.payloads import decode_json

logger = logging.getLogger(__name__)

LOCAL_MOUNT: Final = "/local"

QUEUED: Final = "QUEUED"
RUNNING: Final = "RUNNING"
SUCCEEDED: Final = "SUCCEEDED"
FAILED: Final = "FAILED"

RETRY_AFTER_S: Final = 2
DEFAULT_MAX_INPUT_BYTES: Final = 50 * 1024 * 1024
MAX_JOBS_KEPT: Final = 10_000
SHUTDOWN_GRACE_S: Final = 10.0

# Never what the address answered (it may be an internal one): see the log for that.
_UNREACHABLE: Final = "the image URL could not be fetched"
_TOKEN = re.compile(r"[0-9a-f]{32}")
_RESULT_PREFIX = "/results/"


class _Refused(Exception):
    """An answer other than 200 to a submit."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def error_response(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status_code, headers=headers
    )


@dataclass(slots=True)
class LocalJob:
    id: str
    token: str
    engine: str
    scale: float
    webhook: str | None
    base_url: str
    status: str = QUEUED
    width: int | None = None
    height: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None

    def payload(self) -> dict[str, Any]:
        """The ``GET /api/v1/jobs/{id}`` answer and the webhook body."""
        scale: float | int = int(self.scale) if self.scale.is_integer() else self.scale
        done = self.status == SUCCEEDED
        error = None
        if self.error_code is not None:
            error = {"code": self.error_code, "message": self.error_message or ""}
        return {
            "id": self.id,
            "status": self.status,
            "engine": self.engine,
            "scale": scale,
            "result_url": f"{self.base_url}{_RESULT_PREFIX}{self.token}.png" if done else None,
            "width": self.width if done else None,
            "height": self.height if done else None,
            "error": error,
        }


@dataclass(frozen=True, slots=True)
class _Limits:
    max_input_pixels: int
    max_output_pixels: int
    max_input_bytes: int
    max_concurrent_jobs: int
    download_timeout_s: float
    result_ttl_s: float
    callback_attempts: int
    callback_backoff_s: float
    callback_timeout_s: float


class _Workers:
    """The process pool, replaced when a worker dies (a broken pool takes no more work)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._pool: ProcessPoolExecutor | None = None
        self._retired: list[ProcessPoolExecutor] = []

    def start(self) -> None:
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=engines.init_worker,
            # Workers end with this process, even when it is killed outright.
            initargs=(self._threads, os.getpid()),
        )

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the worker pool is not running")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))
        except BrokenProcessPool:
            if self._pool is pool:
                logger.error("local worker process died; starting a new pool")
                self._retired.append(pool)
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            raise

    async def aclose(self, grace_s: float) -> None:
        pools = [*self._retired, *([self._pool] if self._pool is not None else [])]
        self._pool, self._retired = None, []
        for pool in pools:
            # Processes still running a job after the grace period are terminated
            # (``_processes`` is private; Python 3.14 adds ``terminate_workers()``).
            processes = list((getattr(pool, "_processes", None) or {}).values())
            shutdown = asyncio.ensure_future(
                asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            )
            done, _ = await asyncio.wait({shutdown}, timeout=grace_s)
            if not done:
                logger.warning("local workers still busy after %gs; terminating them", grace_s)
                for process in processes:
                    process.terminate()
            await shutdown


class LocalServer:
    """Jobs, workers and webhook delivery of one local app (``app.state.local``)."""

    def __init__(
        self,
        *,
        api_key: str,
        work_dir: Path,
        workers: int,
        default_engine: str,
        engines: list[str],
        limits: _Limits,
        callback_client: httpx.AsyncClient | None,
        clock: Callable[[], float],
        allow: AllowList | None = None,
    ) -> None:
        self._api_key = api_key.encode()
        self.inputs_dir = work_dir / "inputs"
        self.results_dir = work_dir / "results"
        self.default_engine = default_engine
        self.engines = engines
        self.limits = limits
        self.clock = clock
        self.jobs: dict[str, LocalJob] = {}
        self.active = 0
        self.workers = _Workers(workers)
        self._slots: asyncio.Semaphore | None = None
        self._given_client = callback_client
        self._allow = allow if allow is not None else AllowList()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = False

    def __repr__(self) -> str:
        return f"LocalServer(results_dir={str(self.results_dir)!r}, api_key='***')"

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare_dirs)
        # The guarded client: public addresses and what ``allow`` lists, nothing else.
        self._client = self._given_client or make_guarded_client(
            self._allow, timeout=httpx.Timeout(self.limits.download_timeout_s, connect=10.0)
        )
        self._slots = asyncio.Semaphore(self.workers.workers)
        self.workers.start()
        for _ in range(self.workers.workers):
            self.spawn(self._warm_up(), name="local-warm-up")
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.workers.aclose(SHUTDOWN_GRACE_S)
        if self._client is not None and self._client is not self._given_client:
            await self._client.aclose()
        self._client = None

    def _prepare_dirs(self) -> None:
        """Create the directories; drop what a previous run left (its jobs are gone)."""
        for directory, patterns in (
            (self.inputs_dir, ("*.img",)),
            (self.results_dir, ("*.png", "*.part")),
        ):
            make_private_dir(directory)
            for pattern in patterns:
                for stale in directory.glob(pattern):
                    with contextlib.suppress(OSError):
                        stale.unlink()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("local background task failed", exc_info=task.exception())

    async def _warm_up(self) -> None:
        with contextlib.suppress(Exception):
            await self.workers.run(engines.warm_up)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the local server is not running")
        return self._client

    # -- HTTP handlers ----------------------------------------------------

    def authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        return (
            scheme.lower() == "bearer"
            and bool(key)
            and hmac.compare_digest(key.encode(), self._api_key)
        )

    async def submit(self, request: Request) -> Response:
        if not self.ready:
            return error_response(503, "not_ready", "the local provider is not running")
        if not self.authorized(request):
            return error_response(401, "unauthorized", "send Authorization: Bearer <api key>")
        self._prune()
        if self.active >= self.limits.max_concurrent_jobs:
            return error_response(
                429,
                "busy",
                f"{self.limits.max_concurrent_jobs} jobs are already queued or running",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.active += 1  # held from here, so concurrent submits cannot overshoot
        src: Path | None = None
        try:
            body = await self._read_body(request)
            image_url, image_b64, scale, engine, webhook = self._parse_submit(body)
            job = LocalJob(
                id=secrets.token_hex(8),
                token=secrets.token_hex(16),
                engine=engine,
                scale=scale,
                webhook=webhook,
                base_url=_root_url(request),
            )
            data = await self._input_bytes(image_url, image_b64)
            src = self.inputs_dir / f"{job.id}.img"
            await asyncio.to_thread(src.write_bytes, data)
            del data
            width, height = await asyncio.to_thread(
                engines.probe_image, src, self.limits.max_input_pixels
            )
            engines.check_size(
                width,
                height,
                scale,
                engine,
                max_input_pixels=self.limits.max_input_pixels,
                max_output_pixels=self.limits.max_output_pixels,
            )
        except BaseException as exc:
            self.active -= 1
            if src is not None:
                _unlink(src)
            if isinstance(exc, _Refused):
                return error_response(exc.status_code, exc.code, exc.message)
            if isinstance(exc, RejectedInput):
                return error_response(400, exc.code, exc.message)
            raise
        self.jobs[job.id] = job
        self.spawn(self._run(job, src), name=f"local-{job.id}")
        logger.info("local job %s queued (%s x%g, %dx%d)", job.id, engine, scale, width, height)
        return JSONResponse({"id": job.id, "status": QUEUED})

    async def job_status(self, request: Request) -> Response:
        if not self.authorized(request):
            return error_response(401, "unauthorized", "send Authorization: Bearer <api key>")
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return error_response(404, "not_found", "no such job")
        return JSONResponse(job.payload())

    async def result(self, request: Request) -> Response:
        token = request.path_params["token"]
        path = self.results_dir / f"{token}.png"
        if not _TOKEN.fullmatch(token) or not await asyncio.to_thread(path.is_file):
            return error_response(404, "not_found", "no such result")
        return FileResponse(path, media_type="image/png")

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok" if self.ready else "starting",
                "engines": self.engines,
                "default_engine": self.default_engine,
                "workers": self.workers.workers,
                "active": self.active,
            }
        )

    # -- submit parts -----------------------------------------------------

    async def _read_body(self, request: Request) -> bytes:
        cap = self.limits.max_input_bytes * 4 // 3 + 64 * 1024
        too_large = _Refused(413, "payload_too_large", f"request body is over {cap} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse_submit(self, body: bytes) -> tuple[str | None, str | None, float, str, str | None]:
        """``(image_url, image_base64, scale, engine, webhook)`` or :class:`_Refused`."""
        try:
            doc = decode_json(body, max_bytes=len(body))
        except RejectedPayload as exc:
            raise _Refused(400, "invalid_request", exc.message) from exc
        if not isinstance(doc, dict):
            raise _Refused(400, "invalid_request", "the body must be a JSON object")
        image_url, image_b64 = doc.get("image_url"), doc.get("image_base64")
        if (image_url is None) == (image_b64 is None):
            raise _Refused(400, "invalid_request", "send exactly one of image_url, image_base64")
        if image_url is not None and not _is_http_url(image_url):
            raise _Refused(400, "invalid_request", "image_url must be an http(s) URL")
        if image_b64 is not None and not isinstance(image_b64, str):
            raise _Refused(400, "invalid_request", "image_base64 must be a string")
        try:
            scale = engines.check_scale(doc.get("scale"))
        except RejectedInput as exc:
            raise _Refused(400, exc.code, exc.message) from exc
        engine = doc.get("engine")
        if engine is None:
            engine = self.default_engine
        if not isinstance(engine, str) or engine not in self.engines:
            raise _Refused(
                400,
                engines.UnknownEngine.code,
                f"engine must be one of: {', '.join(self.engines)}",
            )
        webhook = doc.get("webhook")
        if webhook is not None and not _is_http_url(webhook):
            raise _Refused(400, "invalid_request", "webhook must be an http(s) URL")
        return image_url, image_b64, scale, engine, webhook

    async def _input_bytes(self, image_url: str | None, image_b64: str | None) -> bytes:
        if image_b64 is not None:
            try:
                data = base64.b64decode(image_b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _Refused(400, "invalid_request", "image_base64 is not valid base64") from exc
            if len(data) > self.limits.max_input_bytes:
                raise _Refused(400, "input_too_large", self._bytes_message())
            return data
        assert image_url is not None
        return await self._download(image_url)

    def _bytes_message(self) -> str:
        return f"input image is larger than {self.limits.max_input_bytes} bytes"

    async def _download(self, url: str) -> bytes:
        limit = self.limits.max_input_bytes
        try:
            async with self.client.stream(
                "GET", url, timeout=self.limits.download_timeout_s, follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    # What the address answered stays here: it may be an internal one.
                    logger.info("local input download answered HTTP %d", response.status_code)
                    raise _Refused(400, "input_unreachable", _UNREACHABLE)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise _Refused(400, "input_too_large", self._bytes_message())
                    chunks.append(chunk)
        except ForbiddenURL:
            logger.info("local input download refused: the address is not allowed")
            raise _Refused(400, "input_unreachable", _UNREACHABLE) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            logger.info("local input download failed: %s", type(exc).__name__)
            raise _Refused(400, "input_unreachable", _UNREACHABLE) from None
        return b"".join(chunks)

    # -- jobs -------------------------------------------------------------

    async def _run(self, job: LocalJob, src: Path) -> None:
        dst = self.results_dir / f"{job.token}.png"
        slots = self._slots
        assert slots is not None
        try:
            async with slots:
                job.status = RUNNING
                started = time.perf_counter()
                width, height = await self.workers.run(
                    engines.upscale_file,
                    str(src),
                    str(dst),
                    job.scale,
                    job.engine,
                    self.limits.max_input_pixels,
                    max_output_pixels=self.limits.max_output_pixels,
                )
            job.width, job.height, job.status = width, height, SUCCEEDED
            logger.info(
                "local job %s succeeded (%dx%d in %.2fs)",
                job.id,
                width,
                height,
                time.perf_counter() - started,
            )
        except UpscaleError as exc:
            self._fail(job, exc.code, exc.message)
        except BrokenProcessPool:
            self._fail(job, "worker_crashed", "the worker process died while upscaling")
        except asyncio.CancelledError:
            self._fail(job, "internal_error", "the local provider shut down")
            raise
        except Exception:
            logger.exception("local job %s crashed", job.id)
            self._fail(job, "internal_error", "the local provider failed")
        finally:
            job.finished_at = self.clock()
            self.active -= 1
            _unlink(src)
        if job.webhook is not None:
            await self._deliver(job)

    def _fail(self, job: LocalJob, code: str, message: str) -> None:
        job.status, job.error_code, job.error_message = FAILED, code, message
        logger.info("local job %s failed: %s", job.id, code)

    async def _deliver(self, job: LocalJob) -> None:
        """POST the job's payload to its webhook until a 2xx, with exponential backoff."""
        assert job.webhook is not None
        body = json.dumps(job.payload(), separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        attempts = self.limits.callback_attempts
        for attempt in range(1, attempts + 1):
            try:
                response = await self.client.post(
                    job.webhook,
                    content=body,
                    headers=headers,
                    timeout=self.limits.callback_timeout_s,
                )
            except ForbiddenURL:
                outcome, final = "refused: the address is not allowed", True
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                outcome, final = type(exc).__name__, False
            else:
                if 200 <= response.status_code <= 299:
                    logger.info("local job %s webhook delivered", job.id)
                    return
                code = response.status_code
                outcome = f"HTTP {code}"
                final = 400 <= code <= 499 and code not in (408, 429)
            logger.info(
                "local job %s webhook attempt %d/%d failed: %s", job.id, attempt, attempts, outcome
            )
            if final:
                break
            if attempt < attempts:
                await asyncio.sleep(self.limits.callback_backoff_s * 2 ** (attempt - 1))
        logger.warning("local job %s webhook not delivered", job.id)

    def _prune(self) -> None:
        """Forget jobs (and delete results) ``result_ttl_s`` after they ended."""
        now = self.clock()
        ttl = self.limits.result_ttl_s
        expired = [
            job
            for job in self.jobs.values()
            if job.finished_at is not None and now - job.finished_at >= ttl
        ]
        overflow = len(self.jobs) - len(expired) - MAX_JOBS_KEPT
        if overflow > 0:
            done = [j for j in self.jobs.values() if j.finished_at is not None and j not in expired]
            expired.extend(done[:overflow])
        for job in expired:
            del self.jobs[job.id]
            _unlink(self.results_dir / f"{job.token}.png")


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return False
    try:
        return bool(httpx.URL(value).host)
    except (httpx.InvalidURL, ValueError):
        return False


def _root_url(request: Request) -> str:
    """Where this app is mounted, as an absolute URL (its routes are flat, so the
    scope's ``root_path`` is this app's own mount point)."""
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=root, query="", fragment="")).rstrip("/")


def create_local_app(
    *,
    api_key: str,
    work_dir: Path,
    workers: int = 2,
    max_input_pixels: int = 16_000_000,
    max_concurrent_jobs: int = 4,
    default_engine: str | None = None,
    callback_client: httpx.AsyncClient | None = None,
    allow: AllowList | None = None,
    max_output_pixels: int = engines.DEFAULT_MAX_OUTPUT_PIXELS,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    download_timeout_s: float = 30.0,
    result_ttl_s: float = 3 * 3600.0,
    callback_attempts: int = 3,
    callback_backoff_s: float = 0.5,
    callback_timeout_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """Build the local provider's app; its state is ``app.state.local`` (:class:`LocalServer`).

    ``default_engine`` defaults to :func:`~orchestrator.local.engines.default_engine`;
    an engine that does not run here raises ``ValueError``. ``callback_client``, when
    given, is used for input downloads and webhooks and is not closed by the app;
    otherwise the app uses the guarded client, which reaches public addresses and what
    ``allow`` lists (the service's own origins), nothing else.
    """
    if not api_key:
        raise ValueError("api_key must not be empty")
    if workers < 1 or max_concurrent_jobs < 1 or callback_attempts < 1:
        raise ValueError("workers, max_concurrent_jobs and callback_attempts must be >= 1")
    if min(max_input_pixels, max_output_pixels, max_input_bytes) < 1:
        raise ValueError("pixel and byte limits must be positive")
    for name, value in (
        ("download_timeout_s", download_timeout_s),
        ("result_ttl_s", result_ttl_s),
        ("callback_timeout_s", callback_timeout_s),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive")
    if not (math.isfinite(callback_backoff_s) and callback_backoff_s >= 0):
        raise ValueError("callback_backoff_s must be >= 0")
    available = engines.available_engines()
    engine = default_engine or available[0]
    if engine not in available:
        raise ValueError(f"engine {engine!r} does not run here (available: {', '.join(available)})")
    server = LocalServer(
        api_key=api_key,
        work_dir=Path(work_dir),
        workers=workers,
        default_engine=engine,
        engines=available,
        limits=_Limits(
            max_input_pixels=max_input_pixels,
            max_output_pixels=max_output_pixels,
            max_input_bytes=max_input_bytes,
            max_concurrent_jobs=max_concurrent_jobs,
            download_timeout_s=download_timeout_s,
            result_ttl_s=result_ttl_s,
            callback_attempts=callback_attempts,
            callback_backoff_s=callback_backoff_s,
            callback_timeout_s=callback_timeout_s,
        ),
        callback_client=callback_client,
        clock=clock,
        allow=allow,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.aclose()

    app = Starlette(
        routes=[
            Route("/api/v1/upscale", server.submit, methods=["POST"]),
            Route("/api/v1/jobs/{job_id}", server.job_status, methods=["GET"]),
            Route(_RESULT_PREFIX + "{token}.png", server.result, methods=["GET"]),
            Route("/healthz", server.health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.local = server
    return app
