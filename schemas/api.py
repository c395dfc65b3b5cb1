"""The public jobs API: what a client sends and what it gets back."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import RejectedInput
from schemas.jobs import Attempt, Job, Operation
from schemas.routes import parse_max_cost, parse_route, per_provider_options

_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]*)(;[\w=.-]+)*;base64,", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
MAX_PROMPT_CHARS = 1000
# Characters no prompt has a use for (C0 controls but tab and line breaks, and DEL).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
OPERATIONS = ", ".join(sorted(o.value for o in Operation))


@dataclass(frozen=True, slots=True)
class StagedImage:
    """An uploaded image already written to a file as it arrived (capped and hashed)."""

    path: Path
    size: int
    sha256: str
    head: bytes


@dataclass(frozen=True, slots=True)
class CreateJob:
    """A validated request to create a job.

    Exactly one of ``image_url``, ``image_bytes`` and ``image_staged`` is set. A
    replace job has a ``prompt`` and its mask in ``mask_bytes`` or ``mask_staged``
    (uploaded, never a URL: its size is checked against the image's at intake).
    """

    provider: str
    scale: float
    options: dict[str, Any]
    metadata: Any
    image_url: str | None
    image_bytes: bytes | None
    webhook_url: str | None = None
    image_staged: StagedImage | None = None
    operation: Operation = Operation.UPSCALE
    prompt: str | None = None
    mask_bytes: bytes | None = None
    mask_staged: StagedImage | None = None
    # The providers to try in order (``provider`` is the first), the named route
    # they came from, each one's options, and the job's spend limit in credits.
    route: tuple[str, ...] = ()
    route_name: str | None = None
    route_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_cost: float | None = None


def decode_base64_image(text: str, what: str = "image") -> bytes:
    """Decode a data URI or bare base64 string; raise :class:`RejectedInput` if it is neither."""
    stripped = _DATA_URI.sub("", text.strip(), count=1)
    compact = "".join(stripped.split())
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RejectedInput(f"{what} is neither an http(s) URL nor valid base64") from exc
    if not data:
        raise RejectedInput(f"{what} is empty")
    return data


def parse_operation(value: Any) -> Operation:
    """The operation a request names (``upscale`` when it names none)."""
    if value is None:
        return Operation.UPSCALE
    if isinstance(value, str) and value in Operation.__members__.values():
        return Operation(value)
    raise RejectedInput(f"operation must be one of: {OPERATIONS}")


def parse_create_job(
    body: Any,
    *,
    known_providers: frozenset[str],
    staged: StagedImage | None = None,
    mask_staged: StagedImage | None = None,
    routes: Mapping[str, tuple[str, ...]] | None = None,
) -> CreateJob:
    """Validate a ``POST /v1/jobs`` body; ``staged`` and ``mask_staged`` (streamed to
    files) are the image and the mask when they did not come inside ``body``."""
    if not isinstance(body, dict):
        raise RejectedInput("body must be a JSON object")
    route, route_name = parse_route(body, known_providers, routes or {})
    provider = route[0]
    operation = parse_operation(body.get("operation"))
    scale = _scale(body, operation)
    options = body.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise RejectedInput("options must be a JSON object")
    route_options = per_provider_options(options, route, named=route_name is not None)
    webhook_url = body.get("webhook_url")
    if webhook_url is not None and (
        not isinstance(webhook_url, str)
        or not re.match(r"^https?://[^/\s]+", webhook_url)
        or len(webhook_url) > 2048
    ):
        raise RejectedInput("webhook_url must be an http(s) URL")
    image_url, image_bytes = _image(body.get("image"), staged, operation)
    prompt, mask_bytes = _replace_fields(body, mask_staged, operation)
    return CreateJob(
        provider=provider,
        scale=scale,
        options=dict(route_options[provider]),
        metadata=body.get("metadata"),
        image_url=image_url,
        image_bytes=image_bytes,
        webhook_url=webhook_url,
        image_staged=staged,
        operation=operation,
        prompt=prompt,
        mask_bytes=mask_bytes,
        mask_staged=mask_staged,
        route=route,
        route_name=route_name,
        route_options=route_options,
        max_cost=parse_max_cost(body.get("max_cost")),
    )


def _scale(body: dict[str, Any], operation: Operation) -> float:
    if operation is not Operation.UPSCALE:
        if body.get("scale") is not None:
            raise RejectedInput(f"scale is not taken by operation {operation.value}")
        return 1.0
    scale = body.get("scale", 2)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise RejectedInput("scale must be a number")
    if not 1 <= scale <= 16:
        raise RejectedInput("scale must be between 1 and 16")
    return float(scale)


def _image(
    image: Any, staged: StagedImage | None, operation: Operation
) -> tuple[str | None, bytes | None]:
    """The image as a URL or bytes, or neither when it is ``staged``."""
    if staged is not None:
        if image is not None:
            raise RejectedInput("image is given twice")
        if staged.size == 0:
            raise RejectedInput("the image file is empty")
        return None, None
    if not isinstance(image, str) or not image.strip():
        raise RejectedInput("image is required: an http(s) URL, a data URI or base64")
    lowered = image.strip().lower()
    if lowered.startswith(("http://", "https://")):
        if operation is Operation.REPLACE:
            raise RejectedInput(_NO_URL.format(what="image"))
        if len(image.strip()) > 4096:
            raise RejectedInput("image URL is too long")
        return image.strip(), None
    if _SCHEME.match(lowered):
        raise RejectedInput("image URL must use http or https")
    return None, decode_base64_image(image)


_NO_URL = (
    "{what} must be uploaded for operation replace (a file part, a data URI or base64),"
    " not a URL: the image and the mask must be checked to be the same size"
)


def _replace_fields(
    body: dict[str, Any], mask_staged: StagedImage | None, operation: Operation
) -> tuple[str | None, bytes | None]:
    """A replace job's prompt (trimmed) and its mask's bytes (None when staged)."""
    prompt, mask = body.get("prompt"), body.get("mask")
    if operation is not Operation.REPLACE:
        if mask is not None or mask_staged is not None:
            raise RejectedInput("mask is only taken by operation replace")
        if prompt is not None:
            raise RejectedInput("prompt is only taken by operation replace")
        return None, None
    if isinstance(prompt, str) and len(prompt.strip()) > MAX_PROMPT_CHARS:
        raise RejectedInput(
            f"prompt is {len(prompt.strip())} characters long; at most {MAX_PROMPT_CHARS}"
        )
    if not isinstance(prompt, str) or not prompt.strip():
        raise RejectedInput(
            f"prompt is required for operation replace: text of 1 to {MAX_PROMPT_CHARS} characters"
        )
    if _CONTROL.search(prompt):
        raise RejectedInput("prompt holds control characters; only text, tabs and line breaks")
    if mask_staged is not None:
        if mask is not None:
            raise RejectedInput("mask is given twice")
        if mask_staged.size == 0:
            raise RejectedInput("the mask file is empty")
        return prompt.strip(), None
    if not isinstance(mask, str) or not mask.strip():
        raise RejectedInput(
            "mask is required for operation replace: a file part, a data URI or base64"
        )
    lowered = mask.strip().lower()
    if _SCHEME.match(lowered):
        raise RejectedInput(_NO_URL.format(what="mask"))
    return prompt.strip(), decode_base64_image(mask, "mask")


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "provider": attempt.provider,
        "provider_job_id": attempt.provider_job_id,
        "state": attempt.state,
        "failure": attempt.failure.to_json() if attempt.failure else None,
        "cost": attempt.cost,
        "started_at": _iso(attempt.started_at),
        "ended_at": _iso(attempt.ended_at) if attempt.ended_at else None,
    }


def job_to_public(job: Job, *, result_url: str | None) -> dict[str, Any]:
    """The JSON shape of a job in the API, the CLI and (later) events."""
    result = None
    if job.result is not None:
        result = {
            "url": result_url,
            "content_type": job.result.content_type,
            "bytes": job.result.bytes,
            "sha256": job.result.sha256,
            "width": job.result.width,
            "height": job.result.height,
        }
    public: dict[str, Any] = {
        "id": job.id,
        "provider": job.provider,
        "operation": job.operation.value,
        "state": job.state.value,
        "scale": job.scale,
        "options": job.options,
        "provider_job_id": job.provider_job_id,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "deadline_at": _iso(job.deadline_at),
        "metadata": job.metadata,
        "failure": job.failure.to_json() if job.failure else None,
        "result": result,
        "cost": job.cost,
        "retry_of": job.retry_of,
        "route": {"name": job.route_name, "providers": list(job.providers)},
        "max_cost": job.max_cost,
        "attempts": [_attempt(a) for a in (*job.past_attempts, job.current_attempt())],
    }
    if job.operation is Operation.REPLACE:
        public["prompt"] = job.prompt
    return public
