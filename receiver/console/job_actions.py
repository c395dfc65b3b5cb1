"""What an operator does to a job from its page: cancel, reconcile (the dry run shown
first, then applied), retry (an uncertain job only through a confirmation).

Each goes through the same orchestrator verbs as the JSON API (``core/operations``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.core import operations
from receiver.console.jobs import job_or_404
from receiver.console.pages import BASE, render, runtime_of
from schemas.jobs import JobState


def _to_job(job_id: str, note: str) -> Response:
    return RedirectResponse(f"{BASE}/jobs/{job_id}?note={note}", status_code=303)


async def cancel(request: Request) -> Response:
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    if not job.state.terminal:
        await runtime.orchestrator.cancel(job)
    return _to_job(job.id, "cancelled")


async def reconcile_preview(request: Request) -> Response:
    """The dry run: what asking the provider now would do, and a button to apply it."""
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    result = await operations.reconcile(runtime.orchestrator, job, dry_run=True)
    return render(request, "reconcile.html", {"job": job, "result": result}, page="jobs")


async def reconcile_apply(request: Request) -> Response:
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    result = await operations.reconcile(runtime.orchestrator, job)
    return _to_job(job.id, "reconciled" if result.applied else "unchanged")


async def retry_confirm(request: Request) -> Response:
    """An uncertain job's retry asks first: the provider may still have it, and bill it."""
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    return render(request, "retry.html", {"job": job}, page="jobs")


async def retry(request: Request) -> Response:
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    form = await request.form(max_files=0, max_fields=8)
    confirmed = form.get("confirm_uncertain") == "yes"
    if job.state is JobState.UNCERTAIN and not confirmed:
        return render(
            request,
            "retry.html",
            {"job": job, "error": "Tick the box to confirm you checked the provider first."},
            page="jobs",
            status_code=400,
        )
    new = await operations.retry(runtime.orchestrator, job, confirm_uncertain=confirmed)
    return _to_job(new.id, "retried")


routes: list[BaseRoute] = [
    Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
    Route("/jobs/{job_id}/reconcile/preview", reconcile_preview, methods=["POST"]),
    Route("/jobs/{job_id}/reconcile", reconcile_apply, methods=["POST"]),
    Route("/jobs/{job_id}/retry", retry_confirm, methods=["GET"]),
    Route("/jobs/{job_id}/retry", retry, methods=["POST"]),
]
