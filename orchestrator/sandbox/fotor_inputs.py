"""What a Fotor submit brings in: its body read, its images fetched and checked.

Each reader turns a POST body into the :class:`~orchestrator.sandbox.fotor_tasks.TaskFields`
of the task it asks for, or raises :class:`InvalidSubmit` (the route's 400).

- Upscale: the body only; a URL input is downloaded later, by the task (a failed
  download fails the task, as before).
- Replace: both images are downloaded now, with the sandbox's guarded client, so
  that a missing or unreadable image or mask, or a mask of another size, is a 400
  (Fotor's page does not say when it checks; this is the sandbox's choice).
"""

from __future__ import annotations

import logging

from orchestrator.sandbox.context import DownloadFailed, SandboxContext
from orchestrator.sandbox.fotor_replacer import image_size
from orchestrator.sandbox.fotor_requests import InvalidSubmit, parse_replace, parse_submit
from orchestrator.sandbox.fotor_tasks import REPLACE_TYPE, TaskFields

logger = logging.getLogger(__name__)


async def read_upscale(ctx: SandboxContext, raw: bytes) -> TaskFields:
    """The fields of an upscale task from its POST body."""
    parsed = parse_submit(raw, ctx.max_input_bytes)
    return {
        "image_url": parsed.image_url,
        "image_data": parsed.image_data,
        "factor": parsed.factor,
        "max_width": parsed.max_width,
        "max_height": parsed.max_height,
    }


async def read_replace(ctx: SandboxContext, raw: bytes) -> TaskFields:
    """The fields of a replace task from its POST body, both images fetched and checked."""
    parsed = parse_replace(raw, ctx.max_input_bytes)
    image = parsed.image_data or await fetch_input(ctx, parsed.image_url, "imageUrl")
    mask = parsed.mask_data or await fetch_input(ctx, parsed.mask_url, "maskImageUrl")
    limit = ctx.max_output_pixels
    try:
        size = image_size(image, "imageUrl", limit)
        mask_size = image_size(mask, "maskImageUrl", limit)
    except ValueError as exc:
        raise InvalidSubmit(str(exc)) from None
    if size != mask_size:
        raise InvalidSubmit(
            f"maskImageUrl is {mask_size[0]}x{mask_size[1]} but imageUrl is "
            f"{size[0]}x{size[1]}; the sizes must match"
        )
    return {
        "image_url": None,
        "image_data": image,
        "task_type": REPLACE_TYPE,
        "prompt": parsed.prompt,
        "mask_data": mask,
    }


async def fetch_input(ctx: SandboxContext, url: str | None, key: str) -> bytes:
    """The image at ``url`` (field ``key``); a failure is :class:`InvalidSubmit`."""
    limit = ctx.max_input_bytes
    if url is None:
        raise InvalidSubmit(f"{key} is required")
    try:
        return await ctx.download(url, limit)
    except DownloadFailed as exc:
        if exc.too_large:
            raise InvalidSubmit(f"{key} image is larger than {limit} bytes") from None
        logger.info("fotor input download failed: %s", exc.reason)
        raise InvalidSubmit(f"failed to download {key}") from None
