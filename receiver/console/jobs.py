"""Jobs: the list (filters, keyset pages) and a job's page (timeline, images, actions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.service.runtime import Runtime
from receiver.console.pages import BASE, render, render_fragment, runtime_of, session_of
from receiver.jobs import public_job
from receiver.since import since_time
from schemas.errors import NotFound, RejectedInput
from schemas.fields import optional_choice, query_int
from schemas.jobs import Job, JobState, Operation

STATES = tuple(s.value for s in JobState)
OPERATIONS = tuple(o.value for o in Operation)
SINCE_CHOICES = (("", "any time"), ("1h", "last hour"), ("24h", "last day"), ("7d", "last week"))
MAX_TEXT = 200
# Fixed notes a redirect may ask a page to show (never text from the URL itself).
NOTES = {
    "cancelled": "The job was cancelled.",
    "reconciled": "Reconciled: the provider's answer was applied.",
    "unchanged": "Reconciled: nothing changed.",
    "retried": "A new job was created from this one.",
    "submitted": "The job was submitted.",
}


def _until(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw[:40])
    except ValueError:
        raise RejectedInput("until: a date and time such as 2026-11-22T10:00") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def job_filters(runtime: Runtime, params: Any) -> dict[str, Any]:
    """The list's filters from the query string; hostile values are a 400 page."""
    since = params.get("since") or ""
    created_after = since_time(runtime, since)
    text = (params.get("q") or "").strip()
    if len(text) > MAX_TEXT:
        raise RejectedInput(f"the search text is over {MAX_TEXT} characters")
    chosen = {k: v for k, v in params.items() if v}  # a select left at "any" sends ""
    return {
        "state": optional_choice(chosen, "state", STATES),
        "provider": optional_choice(chosen, "provider", sorted(runtime.providers)),
        "operation": optional_choice(chosen, "operation", OPERATIONS),
        "since": since,
        "created_after": created_after,
        "until": params.get("until") or "",
        "created_before": _until(params.get("until")),
        "q": text,
        "after": params.get("after") or None,
        "limit": query_int(params, "limit", default=50, low=1, high=200),
    }


async def job_page_values(runtime: Runtime, params: Any) -> dict[str, Any]:
    f = job_filters(runtime, params)
    found = await runtime.store.list_jobs(
        state=JobState(f["state"]) if f["state"] else None,
        provider=f["provider"],
        operation=Operation(f["operation"]) if f["operation"] else None,
        created_after=f["created_after"],
        created_before=f["created_before"],
        text=f["q"] or None,
        after=f["after"],
        limit=f["limit"] + 1,
    )
    more = len(found) > f["limit"]
    found = found[: f["limit"]]
    keep = {
        k: v
        for k, v in params.items()
        if k in ("state", "provider", "operation", "since", "until", "q", "limit") and v
    }
    next_query = None
    if more and found:
        next_query = "&".join(
            f"{k}={_quote(v)}" for k, v in [*keep.items(), ("after", found[-1].id)]
        )
    return {
        "jobs": found,
        "filters": f,
        "next_query": next_query,
        "first_page": f["after"] is not None,
        "first_query": "&".join(f"{k}={_quote(v)}" for k, v in keep.items()),
        "states": STATES,
        "operations": OPERATIONS,
        "providers": sorted(runtime.providers),
        "since_choices": SINCE_CHOICES,
    }


def _quote(value: str) -> str:
    return quote(str(value), safe="")


async def list_jobs(request: Request) -> Response:
    runtime = runtime_of(request)
    text = (request.query_params.get("q") or "").strip()
    if text.startswith("job_") and " " not in text and len(text) <= 64:
        job = await runtime.store.get_job(text)
        if job is not None:  # an id: straight to its page
            return RedirectResponse(f"{BASE}/jobs/{job.id}", status_code=303)
    values = await job_page_values(runtime, request.query_params)
    live_query = str(request.url.query)
    values["live_url"] = f"{BASE}/jobs/live" + (f"?{live_query}" if live_query else "")
    return render(request, "jobs.html", values, page="jobs")


async def list_jobs_live(request: Request) -> Response:
    values = await job_page_values(runtime_of(request), request.query_params)
    return render_fragment("jobs_table.html", values)


async def job_or_404(runtime: Runtime, job_id: str) -> Job:
    if len(job_id) > 64:
        raise NotFound("no such job")
    job = await runtime.store.get_job(job_id)
    if job is None:
        raise NotFound("no such job")
    return job


def cause_link(cause: str) -> str | None:
    """The inbox page of the callback delivery that caused a transition, if one did."""
    kind, _, delivery_id = cause.partition(":")
    if kind in ("callback", "replay", "inject") and delivery_id.startswith("dlv_"):
        return f"{BASE}/inbox/{delivery_id}"
    return None


async def _input_size(runtime: Runtime, key: str) -> int | None:
    try:
        stream = await runtime.inputs.open(key)
    except NotFound:
        return None
    try:
        return stream.size
    finally:
        await stream.aclose()


async def job_values(runtime: Runtime, job: Job, csrf: str) -> dict[str, Any]:
    public = public_job(runtime, job)
    history = await runtime.store.history(job.id)
    timeline = [
        {
            "at": h.at,
            "from": h.from_state.value if h.from_state else None,
            "to": h.to_state.value,
            "event": h.event,
            "cause": h.cause,
            "link": cause_link(h.cause),
            "detail": json.dumps(h.detail, sort_keys=True) if h.detail else "",
        }
        for h in history
    ]
    attempts = public.get("attempts")
    attempt_rows: list[dict[str, Any]] = []
    if isinstance(attempts, list):
        attempt_rows = [a if isinstance(a, dict) else {"attempt": a} for a in attempts]
    columns: list[str] = []
    for row in attempt_rows:
        columns.extend(k for k in row if k not in columns)
    input_size = await _input_size(runtime, job.input_key) if job.input_key else None
    return {
        "job": job,
        "public": public,
        "metadata": json.dumps(job.metadata, indent=2, sort_keys=True)
        if job.metadata is not None
        else "",
        "options": json.dumps(job.options, sort_keys=True) if job.options else "",
        "timeline": timeline,
        "attempts": attempt_rows,
        "attempt_columns": columns,
        "input_bytes": input_size,
        "can_cancel": not job.state.terminal,
        "can_reconcile": not job.state.terminal and job.provider_job_id is not None,
        "can_retry": job.state in (JobState.FAILED, JobState.UNCERTAIN),
        "csrf": csrf,
    }


async def show_job(request: Request) -> Response:
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    values = await job_values(runtime, job, session_of(request).csrf)
    values["note"] = NOTES.get(request.query_params.get("note") or "", "")
    return render(request, "job.html", values, page="jobs")


async def show_job_live(request: Request) -> Response:
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    values = await job_values(runtime, job, session_of(request).csrf)
    return render_fragment("job_body.html", values)


routes: list[BaseRoute] = [
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/jobs/live", list_jobs_live, methods=["GET"]),
    Route("/jobs/{job_id}", show_job, methods=["GET"]),
    Route("/jobs/{job_id}/live", show_job_live, methods=["GET"]),
]
