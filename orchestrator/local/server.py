"""The local provider's server: its jobs, workers and webhooks (``app.state.local``).

The routes and the wire contract are in :mod:`orchestrator.local.app`. Jobs are
kept in memory (:class:`~orchestrator.local.jobs.LocalJob`), upscaled or
inpainted (:mod:`orchestrator.local.inpainting`) in the worker processes
(:class:`~orchestrator.local.workers.WorkerPool`), and their results served
until ``result_ttl_s`` after they ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Final

import httpx
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.transport import make_guarded_client
from orchestrator.local import engines, inpainting
from orchestrator.local.images import check_size, probe_image
from orchestrator.local.inputs import input_bytes, mask_bytes
from orchestrator.local.jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, LocalJob
from orchestrator.local.limits import Limits
from orchestrator.local.submissions import (
    REPLACE,
    UPSCALE,
    Refused,
    body_cap,
    error_response,
    parse_submit,
    read_body,
    too_large,
)
from orchestrator.local.webhooks import deliver
from orchestrator.local.workers import WorkerPool
from orchestrator.security.private_files import make_private_dir
from schemas.errors import RejectedInput, UpscaleError

logger = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 2
MAX_JOBS_KEPT: Final = 10_000
SHUTDOWN_GRACE_S: Final = 10.0

_TOKEN = re.compile(r"[0-9a-f]{32}")


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
        limits: Limits,
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
        self.workers = WorkerPool(workers)
        # One job per worker runs at a time; the others wait here, QUEUED.
        self._slots = asyncio.Semaphore(workers)
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
        self._slots = asyncio.Semaphore(self.workers.workers)  # fresh for each start
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
        mask: Path | None = None
        try:
            body = await read_body(request, self.limits.max_input_bytes, inputs=2)
            submission = parse_submit(
                body, default_engine=self.default_engine, engines=self.engines
            )
            one_input = body_cap(self.limits.max_input_bytes)
            if submission.operation == UPSCALE and len(body) > one_input:
                raise too_large(one_input)  # an upscale has room for one input only
            del body
            replace = submission.operation == REPLACE
            job = LocalJob(
                id=secrets.token_hex(8),
                token=secrets.token_hex(16),
                engine=inpainting.expected_method() if replace else submission.engine,
                scale=submission.scale,
                webhook=submission.webhook,
                base_url=_root_url(request),
                operation=submission.operation,
            )
            src = self.inputs_dir / f"{job.id}.img"
            await _write(src, await input_bytes(self.client, submission, self.limits))
            if replace:
                mask = self.inputs_dir / f"{job.id}-mask.img"
                await _write(mask, await mask_bytes(self.client, submission, self.limits))
                width, height = await asyncio.to_thread(
                    inpainting.check_inputs,
                    str(src),
                    str(mask),
                    self.limits.max_input_pixels,
                    max_output_pixels=self.limits.max_output_pixels,
                )
            else:
                width, height = await asyncio.to_thread(
                    probe_image, src, self.limits.max_input_pixels
                )
                check_size(
                    width,
                    height,
                    job.scale,
                    job.engine,
                    max_input_pixels=self.limits.max_input_pixels,
                    max_output_pixels=self.limits.max_output_pixels,
                )
        except BaseException as exc:
            self.active -= 1
            for path in (src, mask):
                if path is not None:
                    _unlink(path)
            if isinstance(exc, Refused):
                return error_response(exc.status_code, exc.code, exc.message)
            if isinstance(exc, RejectedInput):
                return error_response(400, exc.code, exc.message)
            raise
        self.jobs[job.id] = job
        self.spawn(self._run(job, src, mask), name=f"local-{job.id}")
        if replace:
            logger.info("local job %s queued (replace, %dx%d)", job.id, width, height)
        else:
            logger.info(
                "local job %s queued (%s x%g, %dx%d)", job.id, job.engine, job.scale, width, height
            )
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

    # -- jobs -------------------------------------------------------------

    async def _run(self, job: LocalJob, src: Path, mask: Path | None = None) -> None:
        dst = self.results_dir / f"{job.token}.png"
        try:
            async with self._slots:
                job.status = RUNNING
                started = time.perf_counter()
                if mask is not None:
                    width, height, job.engine = await self.workers.run(
                        inpainting.replace_file,
                        str(src),
                        str(mask),
                        str(dst),
                        self.limits.max_input_pixels,
                        max_output_pixels=self.limits.max_output_pixels,
                    )
                else:
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
            doing = "upscaling" if mask is None else "inpainting"
            self._fail(job, "worker_crashed", f"the worker process died while {doing}")
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
            if mask is not None:
                _unlink(mask)
        if job.webhook is not None:
            await deliver(self.client, job, job.webhook, self.limits)

    def _fail(self, job: LocalJob, code: str, message: str) -> None:
        job.status, job.error_code, job.error_message = FAILED, code, message
        logger.info("local job %s failed: %s", job.id, code)

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


async def _write(path: Path, data: bytes) -> None:
    await asyncio.to_thread(path.write_bytes, data)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _root_url(request: Request) -> str:
    """Where this app is mounted, as an absolute URL (its routes are flat, so the
    scope's ``root_path`` is this app's own mount point)."""
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=root, query="", fragment="")).rstrip("/")
