"""The public jobs API."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from orchestrator.outbound.subscriptions import current_secret
from orchestrator.results.storage import ResultStream
from orchestrator.service.runtime import Runtime
from receiver.auth import require_token
from receiver.intake import check_job_request, offered_providers
from receiver.since import since_time
from receiver.uploads import received_job
from schemas.api import job_to_public, parse_create_job
from schemas.errors import NotFound, RejectedInput
from schemas.fields import optional_choice, optional_text, query_int
from schemas.jobs import Job, JobState, Operation

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_JOB_STATES = frozenset(s.value for s in JobState)
_OPERATIONS = frozenset(o.value for o in Operation)


def public_job(runtime: Runtime, job: Job) -> dict[str, Any]:
    base = runtime.orchestrator.config.public_base
    return job_to_public(job, result_url=f"{base}/v1/jobs/{job.id}/result")


async def create_job(request: Request) -> Response:
    runtime = require_token(request)
    known = offered_providers(runtime)
    # The image (and mask) stream to staged files, kept until the job has taken them.
    async with received_job(request, runtime) as received:
        request_data = parse_create_job(
            received.payload,
            known_providers=known,
            staged=received.image,
            mask_staged=received.mask,
            routes=runtime.orchestrator.config.routes,
        )
        await check_job_request(runtime, request_data)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
            raise RejectedInput("Idempotency-Key must be 1-255 printable ASCII characters")
        job, created = await runtime.orchestrator.create_job(request_data, idempotency_key=key)
    body = public_job(runtime, job)
    hook = await runtime.store.job_subscription(job.id)
    if hook is not None:
        # The job's own webhook: its signing secret, for this client only.
        body["webhook"] = {
            "subscription_id": hook.id,
            "url": hook.url,
            "secret": current_secret(hook),
        }
    return JSONResponse(body, status_code=202 if created else 200)


async def get_job(request: Request) -> Response:
    runtime = require_token(request)
    job = await runtime.store.get_job(request.path_params["job_id"])
    if job is None:
        raise NotFound("no such job")
    return JSONResponse(public_job(runtime, job))


async def job_history(request: Request) -> Response:
    runtime = require_token(request)
    job_id = request.path_params["job_id"]
    if await runtime.store.get_job(job_id) is None:
        raise NotFound("no such job")
    entries = await runtime.store.history(job_id)
    return JSONResponse(
        {
            "job_id": job_id,
            "history": [
                {
                    "at": e.at.isoformat().replace("+00:00", "Z"),
                    "from": e.from_state.value if e.from_state else None,
                    "to": e.to_state.value,
                    "event": e.event,
                    "cause": e.cause,
                    "detail": e.detail,
                }
                for e in entries
            ],
        }
    )


async def list_jobs(request: Request) -> Response:
    runtime = require_token(request)
    params = request.query_params
    state = optional_choice(params, "state", _JOB_STATES)
    provider = optional_choice(params, "provider", runtime.providers)
    operation = optional_choice(params, "operation", _OPERATIONS)
    limit = query_int(params, "limit", default=50, low=1, high=500)
    created_after = since_time(runtime, params.get("since"))
    jobs = await runtime.store.list_jobs(
        state=JobState(state) if state else None,
        provider=provider,
        after=optional_text(params, "after"),
        limit=limit + 1,
        created_after=created_after,
        operation=Operation(operation) if operation else None,
    )
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return JSONResponse(
        {
            "jobs": [public_job(runtime, j) for j in jobs],
            "next": jobs[-1].id if more and jobs else None,
        }
    )


class ResultResponse(StreamingResponse):
    """Streams a stored result and always releases it, also when the client goes away."""

    def __init__(self, stream: ResultStream, *, media_type: str, headers: dict[str, str]) -> None:
        super().__init__(stream, media_type=media_type, headers=headers)
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stream.aclose()


async def job_result(request: Request) -> Response:
    runtime = require_token(request)
    return await result_response(runtime, request.path_params["job_id"], request)


async def result_response(runtime: Runtime, job_id: str, request: Request) -> Response:
    """The stored result of a job (304 for a matching ``If-None-Match``)."""
    job = await runtime.store.get_job(job_id)
    if job is None or job.result is None:
        raise NotFound("no stored result for this job")
    etag = f'"{job.result.sha256}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    headers = {"ETag": etag, "Content-Length": str(job.result.bytes)}
    try:
        stream = await runtime.results.read_stream(job.result.key)
    except FileNotFoundError:
        raise NotFound("the stored result is gone") from None
    return ResultResponse(stream, media_type=job.result.content_type, headers=headers)


async def cancel_job(request: Request) -> Response:
    runtime = require_token(request)
    job = await runtime.store.get_job(request.path_params["job_id"])
    if job is None:
        raise NotFound("no such job")
    if job.state.terminal:
        raise RejectedInput(f"job is already {job.state.value}")
    job = await runtime.orchestrator.cancel(job)
    return JSONResponse(public_job(runtime, job))


async def serve_input(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    key = runtime.input_signer.verify(request.path_params["token"])
    stream = await runtime.inputs.open(key)
    headers = {"Content-Length": str(stream.size)} if stream.size is not None else {}
    return ResultResponse(stream, media_type=runtime.inputs.content_type(key), headers=headers)
