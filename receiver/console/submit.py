"""Submit a job from the console: upload an image (and, for a replace, a mask and a
prompt). The upload streams through the same intake as ``POST /v1/jobs``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from receiver.console.guard import console_session
from receiver.console.pages import BASE, render, runtime_of
from receiver.console.session import Sessions
from receiver.intake import check_job_request, offered_providers
from receiver.uploads import received_job
from schemas.api import parse_create_job
from schemas.jobs import Operation

# The multipart form checks its CSRF token here, from the parsed fields (the guard
# cannot read it without reading the upload).
UPLOAD_PATHS: tuple[str, ...] = ("/jobs/new",)


async def submit_form(request: Request) -> Response:
    runtime = runtime_of(request)
    providers = [
        {"name": name, "operations": sorted(o.value for o in p.operations)}
        for name, p in sorted(runtime.providers.items())
    ]
    replacers = [p["name"] for p in providers if Operation.REPLACE.value in p["operations"]]
    return render(
        request,
        "submit.html",
        {"providers": providers, "replacers": replacers},
        page="jobs",
    )


async def submit(request: Request) -> Response:
    runtime = runtime_of(request)
    sessions: Sessions = request.app.state.sessions
    session = console_session(request.scope)
    async with received_job(request, runtime) as received:
        if session is None or not sessions.csrf_ok(session, received.fields.get("csrf")):
            return render(
                request,
                "error.html",
                {
                    "status": 403,
                    "title": "Refused",
                    "message": "The form's CSRF token is missing or wrong; reload the page.",
                    "back": f"{BASE}/jobs/new",
                },
                status_code=403,
            )
        job_request = parse_create_job(
            received.payload,
            known_providers=offered_providers(runtime),
            staged=received.image,
            mask_staged=received.mask,
        )
        await check_job_request(runtime, job_request)
        job, _ = await runtime.orchestrator.create_job(job_request)
    return RedirectResponse(f"{BASE}/jobs/{job.id}?note=submitted", status_code=303)


routes: list[BaseRoute] = [
    Route("/jobs/new", submit_form, methods=["GET"]),
    Route("/jobs/new", submit, methods=["POST"]),
]
