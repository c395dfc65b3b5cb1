"""The public jobs API: what a client sends and what it gets back."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import RejectedInput
from schemas.jobs import Job

_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]*)(;[\w=.-]+)*;base64,", re.IGNORECASE)


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

    Exactly one of ``image_url``, ``image_bytes`` and ``image_staged`` is set.
    """

    provider: str
    scale: float
    options: dict[str, Any]
    metadata: Any
    image_url: str | None
    image_bytes: bytes | None
    webhook_url: str | None = None
    image_staged: StagedImage | None = None


def decode_base64_image(text: str) -> bytes:
    """Decode a data URI or bare base64 string; raise :class:`RejectedInput` if it is neither."""
    stripped = _DATA_URI.sub("", text.strip(), count=1)
    compact = "".join(stripped.split())
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RejectedInput("image is neither an http(s) URL nor valid base64") from exc
    if not data:
        raise RejectedInput("image is empty")
    return data


def parse_create_job(
    body: Any,
    *,
    known_providers: frozenset[str],
    staged: StagedImage | None = None,
) -> CreateJob:
    """Validate a ``POST /v1/jobs`` body; ``staged`` (streamed to a file) is the image
    when it did not come inside ``body``."""
    if not isinstance(body, dict):
        raise RejectedInput("body must be a JSON object")
    provider = body.get("provider")
    if not isinstance(provider, str) or provider not in known_providers:
        names = ", ".join(sorted(known_providers))
        raise RejectedInput(f"provider must be one of: {names}")
    scale = body.get("scale", 2)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise RejectedInput("scale must be a number")
    if not 1 <= scale <= 16:
        raise RejectedInput("scale must be between 1 and 16")
    options = body.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise RejectedInput("options must be a JSON object")
    webhook_url = body.get("webhook_url")
    if webhook_url is not None and (
        not isinstance(webhook_url, str)
        or not re.match(r"^https?://[^/\s]+", webhook_url)
        or len(webhook_url) > 2048
    ):
        raise RejectedInput("webhook_url must be an http(s) URL")
    image = body.get("image")
    if staged is not None:
        if image is not None:
            raise RejectedInput("image is given twice")
        if staged.size == 0:
            raise RejectedInput("the image file is empty")
        return CreateJob(
            provider=provider,
            scale=float(scale),
            options=dict(options),
            metadata=body.get("metadata"),
            image_url=None,
            image_bytes=None,
            webhook_url=webhook_url,
            image_staged=staged,
        )
    if not isinstance(image, str) or not image.strip():
        raise RejectedInput("image is required: an http(s) URL, a data URI or base64")
    image_url: str | None = None
    image_bytes: bytes | None = None
    lowered = image.strip().lower()
    if lowered.startswith(("http://", "https://")):
        image_url = image.strip()
        if len(image_url) > 4096:
            raise RejectedInput("image URL is too long")
    elif re.match(r"^[a-z][a-z0-9+.-]*://", lowered):
        raise RejectedInput("image URL must use http or https")
    else:
        image_bytes = decode_base64_image(image)
    return CreateJob(
        provider=provider,
        scale=float(scale),
        options=dict(options),
        metadata=body.get("metadata"),
        image_url=image_url,
        image_bytes=image_bytes,
        webhook_url=webhook_url,
    )


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


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
    return {
        "id": job.id,
        "provider": job.provider,
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
    }
