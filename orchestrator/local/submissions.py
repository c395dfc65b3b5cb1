"""A submit to the local provider, read from its request and checked (no I/O but the body).

:func:`read_body` caps the body, :func:`parse_submit` turns it into a
:class:`Submission`; either raises :class:`Refused` with the answer to give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from orchestrator.local.errors import UnknownEngine
from orchestrator.local.images import check_scale
from schemas.errors import RejectedInput, RejectedPayload
from schemas.payloads import decode_json

UPSCALE: Final = "upscale"
REPLACE: Final = "replace"
OPERATIONS: Final = (UPSCALE, REPLACE)
MAX_PROMPT_CHARS: Final = 1000
REPLACE_ONLY: Final = ("prompt", "mask_url", "mask_base64")
UPSCALE_ONLY: Final = ("scale", "engine")


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
    """A checked submit: exactly one of ``image_url`` and ``image_base64`` is set.

    A replace has a ``prompt`` and exactly one of ``mask_url`` and ``mask_base64``;
    its ``scale`` is 1 and its ``engine`` is empty (the worker picks the method).
    """

    image_url: str | None
    image_base64: str | None
    scale: float
    engine: str
    webhook: str | None
    operation: str = UPSCALE
    prompt: str | None = None
    mask_url: str | None = None
    mask_base64: str | None = None


def body_cap(max_input_bytes: int) -> int:
    """The most a submit body may hold: an input of ``max_input_bytes`` as base64, and JSON."""
    return max_input_bytes * 4 // 3 + 64 * 1024


def too_large(cap: int) -> Refused:
    return Refused(413, "payload_too_large", f"request body is over {cap} bytes")


async def read_body(request: Request, max_input_bytes: int, *, inputs: int = 1) -> bytes:
    """The body, room for ``inputs`` inputs of ``max_input_bytes`` each as base64 (a replace
    sends an image and a mask); 413 past it."""
    cap = body_cap(max_input_bytes) * inputs
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large(cap)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise too_large(cap)
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
    operation = doc.get("operation")
    if operation is not None and operation not in OPERATIONS:
        raise Refused(400, "invalid_request", f"operation must be one of: {', '.join(OPERATIONS)}")
    if operation == REPLACE:
        return _replace(doc, image_url, image_b64)
    given = [name for name in REPLACE_ONLY if doc.get(name) is not None]
    if given:
        raise Refused(400, "invalid_request", f"{given[0]} is for operation 'replace' only")
    try:
        scale = check_scale(doc.get("scale"))
    except RejectedInput as exc:
        raise Refused(400, exc.code, exc.message) from exc
    engine = doc.get("engine")
    if engine is None:
        engine = default_engine
    if not isinstance(engine, str) or engine not in engines:
        raise Refused(400, UnknownEngine.code, f"engine must be one of: {', '.join(engines)}")
    webhook = _webhook(doc)
    return Submission(image_url, image_b64, scale, engine, webhook)


def _replace(doc: dict[str, object], image_url: object, image_b64: object) -> Submission:
    given = [name for name in UPSCALE_ONLY if doc.get(name) is not None]
    if given:
        raise Refused(400, "invalid_request", f"{given[0]} is for operation 'upscale' only")
    prompt = doc.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Refused(400, "invalid_request", "a replace needs a prompt (a non-empty string)")
    prompt = prompt.strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        raise Refused(400, "invalid_request", f"prompt is over {MAX_PROMPT_CHARS} characters")
    mask_url, mask_b64 = doc.get("mask_url"), doc.get("mask_base64")
    if (mask_url is None) == (mask_b64 is None):
        raise Refused(
            400, "invalid_request", "a replace needs exactly one of mask_url, mask_base64"
        )
    if mask_url is not None and not is_http_url(mask_url):
        raise Refused(400, "invalid_request", "mask_url must be an http(s) URL")
    if mask_b64 is not None and not isinstance(mask_b64, str):
        raise Refused(400, "invalid_request", "mask_base64 must be a string")
    webhook = _webhook(doc)
    return Submission(
        _text(image_url),
        _text(image_b64),
        1.0,
        "",
        webhook,
        operation=REPLACE,
        prompt=prompt,
        mask_url=_text(mask_url),
        mask_base64=_text(mask_b64),
    )


def _webhook(doc: dict[str, object]) -> str | None:
    webhook = doc.get("webhook")
    if webhook is not None and not is_http_url(webhook):
        raise Refused(400, "invalid_request", "webhook must be an http(s) URL")
    return _text(webhook)


def _text(value: object) -> str | None:
    """A value checked to be a string or ``None`` above, typed so."""
    return value if isinstance(value, str) else None


def is_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return False
    try:
        return bool(httpx.URL(value).host)
    except (httpx.InvalidURL, ValueError):
        return False
