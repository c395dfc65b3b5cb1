"""A submit to the local provider, read from its request and checked (no I/O but the body).

:func:`read_body` caps the body, :func:`parse_submit` turns it into a
:class:`Submission`; either raises :class:`Refused` with the answer to give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from orchestrator.local.errors import UnknownEngine
from orchestrator.local.images import check_scale
from schemas.errors import RejectedInput, RejectedPayload
from schemas.payloads import decode_json


class Refused(Exception):
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


@dataclass(frozen=True, slots=True)
class Submission:
    """A checked submit: exactly one of ``image_url`` and ``image_base64`` is set."""

    image_url: str | None
    image_base64: str | None
    scale: float
    engine: str
    webhook: str | None


async def read_body(request: Request, max_input_bytes: int) -> bytes:
    """The body, room for an input of ``max_input_bytes`` as base64; 413 past it."""
    cap = max_input_bytes * 4 // 3 + 64 * 1024
    too_large = Refused(413, "payload_too_large", f"request body is over {cap} bytes")
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


def parse_submit(body: bytes, *, default_engine: str, engines: Sequence[str]) -> Submission:
    """The submit in ``body``, or :class:`Refused`."""
    try:
        doc = decode_json(body, max_bytes=len(body))
    except RejectedPayload as exc:
        raise Refused(400, "invalid_request", exc.message) from exc
    if not isinstance(doc, dict):
        raise Refused(400, "invalid_request", "the body must be a JSON object")
    image_url, image_b64 = doc.get("image_url"), doc.get("image_base64")
    if (image_url is None) == (image_b64 is None):
        raise Refused(400, "invalid_request", "send exactly one of image_url, image_base64")
    if image_url is not None and not is_http_url(image_url):
        raise Refused(400, "invalid_request", "image_url must be an http(s) URL")
    if image_b64 is not None and not isinstance(image_b64, str):
        raise Refused(400, "invalid_request", "image_base64 must be a string")
    try:
        scale = check_scale(doc.get("scale"))
    except RejectedInput as exc:
        raise Refused(400, exc.code, exc.message) from exc
    engine = doc.get("engine")
    if engine is None:
        engine = default_engine
    if not isinstance(engine, str) or engine not in engines:
        raise Refused(400, UnknownEngine.code, f"engine must be one of: {', '.join(engines)}")
    webhook = doc.get("webhook")
    if webhook is not None and not is_http_url(webhook):
        raise Refused(400, "invalid_request", "webhook must be an http(s) URL")
    return Submission(image_url, image_b64, scale, engine, webhook)


def is_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return False
    try:
        return bool(httpx.URL(value).host)
    except (httpx.InvalidURL, ValueError):
        return False
