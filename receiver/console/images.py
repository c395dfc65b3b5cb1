"""A job's images for its page, served by the service itself behind the session:
the stored result (as ``GET /v1/jobs/{id}/result``), and the uploaded input and
mask. An input given as a URL is not fetched for the page (the page names it)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from receiver.console.jobs import job_or_404
from receiver.console.pages import runtime_of
from receiver.jobs import ResultResponse, result_response
from schemas.errors import NotFound


async def result(request: Request) -> Response:
    runtime = runtime_of(request)
    return await result_response(runtime, request.path_params["job_id"], request)


async def _uploaded(request: Request, which: str) -> Response:
    runtime = runtime_of(request)
    job = await job_or_404(runtime, request.path_params["job_id"])
    key = job.input_key if which == "input" else job.mask_key
    if key is None:
        raise NotFound(f"this job's {which} was not uploaded")
    stream = await runtime.inputs.open(key)
    headers = {"Content-Length": str(stream.size)} if stream.size is not None else {}
    headers["Cache-Control"] = "private, max-age=3600"
    return ResultResponse(stream, media_type=runtime.inputs.content_type(key), headers=headers)


async def input_image(request: Request) -> Response:
    return await _uploaded(request, "input")


async def mask_image(request: Request) -> Response:
    return await _uploaded(request, "mask")


routes: list[BaseRoute] = [
    Route("/jobs/{job_id}/result", result, methods=["GET"]),
    Route("/jobs/{job_id}/input", input_image, methods=["GET"]),
    Route("/jobs/{job_id}/mask", mask_image, methods=["GET"]),
]
