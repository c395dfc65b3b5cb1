"""What an operator does to a job from its page: cancel, reconcile (the dry run shown
first, then applied), retry (an uncertain job only through a confirmation), inject a
callback captured elsewhere; and the stuck jobs reconciled together, the same way.

Each goes through the same orchestrator verbs as the JSON API (``core/operations``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.core import operations
from receiver.console.jobs import job_or_404
from receiver.console.pages import BASE, render, runtime_of
from schemas.errors import RejectedInput
from schemas.jobs import JobState

# How many stuck jobs one bulk reconcile asks about (each is a status call).
BULK_MAX = 50


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


async def inject(request: Request) -> Response:
    """A callback for this job captured elsewhere (a provider's dashboard, a proxy's
    log), taken through the same checks as a live one; its delivery's page follows."""
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    form = await request.form(max_files=0, max_fields=8)
    body = form.get("body")
    if not isinstance(body, str) or not body.strip():
        raise RejectedInput("paste the callback's body to inject it")
    delivery, _ = await operations.inject(
        runtime.orchestrator, job.provider, body.encode(), job_id=job.id
    )
    return RedirectResponse(f"{BASE}/inbox/{delivery.id}", status_code=303)


async def reconcile_stuck_preview(request: Request) -> Response:
    """Every stuck job's dry run (up to BULK_MAX), then a button to apply them."""
    runtime = runtime_of(request)
    jobs = await operations.stuck_jobs(
        runtime.orchestrator, older_than_s=runtime.settings.stuck_after_s, limit=BULK_MAX
    )
    results = [await operations.reconcile(runtime.orchestrator, j, dry_run=True) for j in jobs]
    return render(
        request,
        "reconcile_many.html",
        {"results": results, "dry_run": True, "bulk_max": BULK_MAX},
        page="jobs",
    )


async def reconcile_stuck(request: Request) -> Response:
    """Apply: the jobs the dry run listed, each asked again now."""
    runtime = runtime_of(request)
    form = await request.form(max_files=0, max_fields=BULK_MAX + 4)
    ids = [i for i in form.getlist("job_id") if isinstance(i, str)][:BULK_MAX]
    results = []
    for job_id in ids:
        job = await runtime.store.get_job(job_id) if len(job_id) <= 64 else None
        if job is not None:
            results.append(await operations.reconcile(runtime.orchestrator, job))
    return render(
        request,
        "reconcile_many.html",
        {"results": results, "dry_run": False, "bulk_max": BULK_MAX},
        page="jobs",
    )


routes: list[BaseRoute] = [
    Route("/reconcile/stuck/preview", reconcile_stuck_preview, methods=["POST"]),
    Route("/reconcile/stuck", reconcile_stuck, methods=["POST"]),
    Route("/jobs/{job_id}/inject", inject, methods=["POST"]),
    Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
    Route("/jobs/{job_id}/reconcile/preview", reconcile_preview, methods=["POST"]),
    Route("/jobs/{job_id}/reconcile", reconcile_apply, methods=["POST"]),
    Route("/jobs/{job_id}/retry", retry_confirm, methods=["GET"]),
    Route("/jobs/{job_id}/retry", retry, methods=["POST"]),
]
