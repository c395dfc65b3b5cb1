"""Sandbox double of the Fotor OpenAPI AI Upscaler and AI Replace (https://api-b.fotor.com).

Wire contract (see /work/shared/providers.md section 1), under the mount ``/fotor``:

- ``POST /v1/aiart/imgupscale`` with ``Authorization: Bearer <key>`` and
  ``{"upscaling_resize", "userImageUrl", "max_image_width", "max_image_height"}``
  answers ``{"code": "000", "msg": "success", "data": {"taskId": <32 hex>}}``;
  ``userImageUrl`` is an http(s) URL (downloaded), a data URI or bare base64;
- ``POST /v1/aiart/replacer`` with ``{"imageUrl", "content", "maskImageUrl"}``
  answers the same; both images are URLs (downloaded before the answer, so that
  an unreadable image or a mask of another size is a 400) or base64 as above.
  The edit is real and deterministic (see ``fotor_replacer.py``);
- ``GET /v1/aiart/tasks/{taskId}`` answers the envelope around the task data
  ``{taskId, createTime, updateTime (epoch ms), status, businessId, type,
  resultUrl, hasHsfw, creditsIncrement}`` plus ``msg`` when it failed;
- ``GET /v1/credits`` answers ``{businessId, total, remaining}``: 1000 credits,
  spent by each task that ends with status 1 (1 per upscale, 2 per replace, an
  assumed figure; see ``fotor_tasks.py``);
- errors answer the envelope with ``data: null`` and HTTP 400/401/404/429/500,
  or HTTP 200 with code ``999`` (fault ``error_in_200``) or ``510`` (fault
  ``no_credit``, or no credits left).

The webhook is account-level, as at Fotor (there it is set in a dashboard): the
sandbox keeps one URL, set by ``PUT /webhook`` with ``{"url": ...}`` (``null`` or
``""`` clears it) and read by ``GET /webhook``. When set, it receives the flat body
``{taskId, status, businessId, type, resultUrl}`` (plus ``hasHsfw: true`` when
flagged) once with status 0 when the task starts (fault ``progress_callbacks``,
default on) and once when it ends (status 1 or 2).

Tasks are processed for real (Pillow LANCZOS resize by ``upscaling_resize``, the
output capped at ``max_image_width`` x ``max_image_height``). Results are hosted at
``/results/{token}.png`` and, for the ``s3_result`` fault, reported as
``s3://img-pub-fotor/results/{token}.png`` and served at ``/s3/results/{token}.png``
so that a client rewriting the bucket to ``{root}/fotor/s3`` can fetch them.

Other Fotor faults: ``nsfw`` (status 2 with ``hasHsfw: true``) and ``empty_result``
(status 1 with ``resultUrl: ""``, still charged).

The ``fotor`` stats are registered on the first Fotor request, so a sandbox
nobody sent Fotor traffic to reports no ``fotor`` entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from orchestrator.sandbox.context import (
    DownloadFailed,
    SandboxContext,
    retry_after_value,
    sandbox_root_url,
)
from orchestrator.sandbox.control import control_denied
from orchestrator.sandbox.fotor_inputs import read_replace, read_upscale
from orchestrator.sandbox.fotor_payloads import envelope, task_data, webhook_payload
from orchestrator.sandbox.fotor_requests import InvalidSubmit
from orchestrator.sandbox.fotor_tasks import (
    FAILED,
    REPLACE_TYPE,
    SUCCEEDED,
    UPSCALE_TYPE,
    SandboxTask,
    TaskFailed,
    TaskFields,
    edit,
    task_cost,
)
from orchestrator.sandbox.wire import bearer_key, is_http_url, sleep_unless_disconnected

logger = logging.getLogger(__name__)

PROVIDER = "fotor"
PREFIX = "/fotor"
RESULTS_PREFIX = "/results"
S3_PREFIX = "/s3"
S3_BUCKET = "s3://img-pub-fotor"
BUSINESS_ID = "sandbox"

INITIAL_CREDITS = 1000

EXTRA_COUNTERS = (
    "submits_rejected",
    "submits_throttled",
    "submits_errored",
    "submits_timed_out",
    "submits_error_in_200",
    "submits_no_credit",
    "status_throttled",
    "status_errored",
    "credits_calls",
    "unauthorized",
    "jobs_succeeded",
    "jobs_failed",
    "early_callbacks",
    "progress_callbacks",
    "callbacks_skipped",
    "callback_attempts",
    "callbacks_dropped",
    "results_expired",
    "results_corrupt",
    "results_nsfw",
    "results_empty",
    "results_s3",
)

# Reads a submit's body into the fields of the task it asks for (fotor_inputs.py).
Reader = Callable[[SandboxContext, bytes], Awaitable[TaskFields]]


class FotorSandbox:
    """The Fotor routes, task table, credits and account webhook on a ``SandboxContext``."""

    def __init__(self, ctx: SandboxContext, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.tasks: dict[str, SandboxTask] = {}
        self.webhook_url: str | None = None
        self.credits_used = 0
        self._wall_clock = wall_clock

    @property
    def credits_remaining(self) -> int:
        return INITIAL_CREDITS - self.credits_used

    # -- routes -----------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Routes to mount at ``PREFIX``."""
        results = self.ctx.results.routes(PROVIDER)
        return [
            Route("/v1/aiart/imgupscale", self.submit, methods=["POST"]),
            Route("/v1/aiart/replacer", self.submit_replace, methods=["POST"]),
            Route("/v1/aiart/tasks/", self.task_without_id, methods=["GET"]),
            Route("/v1/aiart/tasks/{task_id}", self.task, methods=["GET"]),
            Route("/v1/credits", self.credits, methods=["GET"]),
            Route("/webhook", self.get_webhook, methods=["GET"]),
            Route("/webhook", self.put_webhook, methods=["PUT"]),
            Mount(RESULTS_PREFIX, routes=results),
            Mount(f"{S3_PREFIX}{RESULTS_PREFIX}", routes=results),
        ]

    # -- handlers ---------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        return await self._submit(request, read_upscale)

    async def submit_replace(self, request: Request) -> Response:
        return await self._submit(request, read_replace)

    async def _submit(self, request: Request, read: Reader) -> Response:
        ctx, faults = self.ctx, self.ctx.faults_for("fotor")
        self._bump("submits")
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        try:
            fields = await read(ctx, await request.body())
        except InvalidSubmit as exc:
            self._bump("submits_rejected")
            return envelope("400", str(exc), status_code=400)
        if faults.roll("submit_429", ctx.rng):
            self._bump("submits_throttled")
            return self._throttled()
        if faults.roll("submit_500", ctx.rng):
            self._bump("submits_errored")
            return envelope("500", "internal server error", status_code=500)
        if faults.roll("error_in_200", ctx.rng):
            self._bump("submits_error_in_200")
            return envelope("999", "unknown error")
        cost = task_cost(fields.get("task_type", UPSCALE_TYPE))
        if faults.roll("no_credit", ctx.rng) or self.credits_remaining < cost:
            self._bump("submits_no_credit")
            return envelope("510", "No enough credits")

        now_ms = self._now_ms()
        task = SandboxTask(
            **fields,
            id=ctx.new_id(16),
            base_url=sandbox_root_url(request),
            created_ms=now_ms,
            updated_ms=now_ms,
            nsfw=faults.roll("nsfw", ctx.rng),
            s3=faults.roll("s3_result", ctx.rng),
            empty=faults.roll("empty_result", ctx.rng),
        )
        self.tasks[task.id] = task
        self._bump("jobs_created")
        if task.task_type == REPLACE_TYPE:
            logger.info("fotor task %s created (replace)", task.id)
        else:
            logger.info("fotor task %s created (x%g)", task.id, task.factor)

        answer = {"taskId": task.id}
        if faults.roll("early_callback", ctx.rng):
            self._bump("early_callbacks")
            await ctx.run_before_answer(self._run(task, wait=False), name=f"fotor-{task.id}")
        else:
            ctx.spawn(self._run(task, wait=True), name=f"fotor-{task.id}")
        if faults.roll("submit_timeout", ctx.rng):
            self._bump("submits_timed_out")
            await sleep_unless_disconnected(request, faults.submit_timeout_s)
        return envelope("000", "success", answer)

    async def task(self, request: Request) -> Response:
        ctx, faults = self.ctx, self.ctx.faults
        self._bump("status_calls")
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        if faults.roll("status_429", ctx.rng):
            self._bump("status_throttled")
            return self._throttled()
        if faults.roll("status_500", ctx.rng):
            self._bump("status_errored")
            return envelope("500", "internal server error", status_code=500)
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return envelope("404", "task not found", status_code=404)
        result_url = self._result_url(task, sandbox_root_url(request))
        return envelope("000", "success", task_data(task, result_url))

    async def task_without_id(self, request: Request) -> Response:
        self._bump("status_calls")
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        return envelope("400", "taskId is required", status_code=400)

    async def credits(self, request: Request) -> Response:
        self._bump("credits_calls")
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        data = {
            "businessId": BUSINESS_ID,
            "total": INITIAL_CREDITS,
            "remaining": self.credits_remaining,
        }
        return envelope("000", "success", data)

    async def get_webhook(self, request: Request) -> Response:
        # The URL is the service's signed account callback: a control route.
        if (denied := control_denied(request, self.ctx.control_tokens)) is not None:
            return denied
        return JSONResponse({"url": self.webhook_url})

    async def put_webhook(self, request: Request) -> Response:
        if (denied := control_denied(request, self.ctx.control_tokens)) is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        url = body["url"] if isinstance(body, dict) and "url" in body else 0
        if url is None or url == "":
            self.webhook_url = None
        elif is_http_url(url):
            self.webhook_url = str(url)
        else:
            return JSONResponse(
                {"error": 'body must be {"url": "<http(s) URL>"} or {"url": null}'},
                status_code=400,
            )
        logger.info("fotor webhook %s", "set" if self.webhook_url else "cleared")
        return JSONResponse({"url": self.webhook_url})

    # -- internals --------------------------------------------------------

    def _bump(self, counter: str) -> None:
        self.ctx.stats.register(PROVIDER, EXTRA_COUNTERS)
        self.ctx.stats.bump(PROVIDER, counter)

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _check_auth(self, request: Request) -> Response | None:
        key = bearer_key(request)
        if key is not None and self.ctx.accepts_key(key):
            return None
        self._bump("unauthorized")
        if key is None:
            return envelope(
                "401", "missing API key: send Authorization: Bearer <key>", status_code=401
            )
        return envelope("401", "invalid API key", status_code=401)

    def _throttled(self) -> Response:
        retry_after = retry_after_value(self.ctx.faults.retry_after_s)
        return envelope(
            "429", "too many requests", status_code=429, headers={"Retry-After": retry_after}
        )

    def _result_url(self, task: SandboxTask, base_url: str) -> str:
        if task.status != SUCCEEDED or task.png is None or task.empty:
            return ""
        faults, rng = self.ctx.faults, self.ctx.rng
        token = self.ctx.results.mint(
            PROVIDER,
            task.png,
            media_type="image/png",
            extension="png",
            expired=faults.roll("expire_result", rng),
            corrupt=faults.roll("corrupt_result", rng),
        )
        key = f"{RESULTS_PREFIX.strip('/')}/{token}.png"
        if task.s3:
            return f"{S3_BUCKET}/{key}"
        base = faults.result_base_url or base_url
        return f"{base}{PREFIX}/{key}"

    async def _run(self, task: SandboxTask, *, wait: bool) -> None:
        """Process ``task`` to a final status, notifying the webhook on the way."""
        if self.ctx.faults.roll("progress_callbacks", self.ctx.rng):
            self._bump("progress_callbacks")
            await self._notify(task)
        try:
            await self._process(task, wait=wait)
        except TaskFailed as exc:
            self._finish(task, FAILED, str(exc))
        except Exception:
            logger.exception("fotor task %s crashed", task.id)
            self._finish(task, FAILED, "internal error")
        await self._notify(task)

    async def _notify(self, task: SandboxTask) -> None:
        url = self.webhook_url
        if url is None:
            self._bump("callbacks_skipped")
            return
        body = webhook_payload(task, self._result_url(task, task.base_url))
        await self.ctx.callbacks.deliver(PROVIDER, url, body)

    async def _process(self, task: SandboxTask, *, wait: bool) -> None:
        data = task.image_data
        if data is None:
            if task.image_url is None:
                raise TaskFailed("the task has no image")
            data = await self._download(task.image_url)
        delay = self.ctx.faults.processing_s
        if wait and delay > 0:
            await asyncio.sleep(delay)
        try:
            png, width, height = await asyncio.to_thread(
                edit, task, data, self.ctx.max_output_pixels
            )
        except ValueError as exc:
            raise TaskFailed(f"image processing failed: {exc}") from None
        task.image_data = task.mask_data = None
        if task.nsfw:
            self._bump("results_nsfw")
            self._finish(task, FAILED, "NSFW content detected")
            return
        task.png = png
        if task.empty:
            self._bump("results_empty")
        if task.s3:
            self._bump("results_s3")
        self._finish(task, SUCCEEDED, None)
        logger.info("fotor task %s succeeded (%dx%d)", task.id, width, height)

    def _finish(self, task: SandboxTask, status: int, msg: str | None) -> None:
        task.status, task.msg = status, msg
        task.updated_ms = self._now_ms()
        if status == SUCCEEDED:
            task.credits = task_cost(task.task_type)
            self.credits_used += task.credits
            self._bump("jobs_succeeded")
        else:
            self._bump("jobs_failed")
            logger.info("fotor task %s failed: %s", task.id, msg)

    async def _download(self, url: str) -> bytes:
        limit = self.ctx.max_input_bytes
        try:
            return await self.ctx.download(url, limit)
        except DownloadFailed as exc:
            if exc.too_large:
                raise TaskFailed(f"the image is larger than {limit} bytes") from None
            logger.info("fotor input download failed: %s", exc.reason)
            raise TaskFailed("failed to download the image") from None
