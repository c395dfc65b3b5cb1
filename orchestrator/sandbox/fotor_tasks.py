"""A sandbox Fotor task: its record, its statuses, its cost, and the resize it performs.

Statuses are Fotor's: 0 running, 1 succeeded, 2 failed. An upscale task resizes,
keeping the aspect ratio and capping the output at the task's ``max_image_width``
x ``max_image_height``; a replace task paints its mask's area
(:mod:`orchestrator.sandbox.fotor_replacer`).

The ``type`` strings are what the task details and the webhook report; Fotor
documents neither value, so both are assumed (the endpoint's last path segment).
Costs: an upscale task charges 1 credit (providers.md: 1 token per image); a
replace task charges :data:`REPLACE_CREDITS`, an assumed figure, since Fotor's
token page does not list AI Replace.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Required, TypedDict

from PIL import Image

from orchestrator.sandbox.fotor_replacer import image_size, replace_masked
from orchestrator.sandbox.imaging import output_size, upscale_image

RUNNING, SUCCEEDED, FAILED = 0, 1, 2

UPSCALE_TYPE = "imgupscale"
REPLACE_TYPE = "replacer"
UPSCALE_CREDITS = 1
REPLACE_CREDITS = 2  # assumed


def task_cost(task_type: str) -> int:
    """The credits a task of ``task_type`` charges when it succeeds."""
    return REPLACE_CREDITS if task_type == REPLACE_TYPE else UPSCALE_CREDITS


class TaskFields(TypedDict, total=False):
    """What a submit asks for: the fields of its :class:`SandboxTask` that the body gives."""

    image_url: Required[str | None]
    image_data: Required[bytes | None]
    task_type: str
    factor: float
    max_width: int
    max_height: int
    prompt: str | None
    mask_data: bytes | None


@dataclass(slots=True)
class SandboxTask:
    id: str
    base_url: str
    created_ms: int
    updated_ms: int
    image_url: str | None
    image_data: bytes | None = field(repr=False)
    task_type: str = UPSCALE_TYPE
    factor: float = 1.0
    max_width: int = 8192
    max_height: int = 8192
    # A replace task: the text and the mask (fetched at submit, like its image).
    prompt: str | None = None
    mask_data: bytes | None = field(default=None, repr=False)
    nsfw: bool = False
    s3: bool = False
    empty: bool = False
    status: int = RUNNING
    msg: str | None = None
    credits: int = 0
    png: bytes | None = field(default=None, repr=False)


class TaskFailed(Exception):
    """Processing failed; the message goes to the task's ``msg``."""


def upscale_capped(
    data: bytes, factor: float, max_width: int, max_height: int, max_pixels: int
) -> tuple[bytes, int, int]:
    """PNG bytes of ``data`` resized by ``factor``, capped at ``max_width`` x ``max_height``.

    The aspect ratio is kept: the factor is lowered until both sides fit. Blocking;
    raises ``ValueError`` for non-images and oversized images.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
    except Exception as exc:  # Pillow raises many types for junk input
        raise ValueError(f"input is not a readable image: {type(exc).__name__}") from None
    if width < 1 or height < 1:
        raise ValueError("input image is empty")
    effective = min(factor, max_width / width, max_height / height)
    png = upscale_image(data, effective, max_pixels)
    out_width, out_height = output_size(width, height, effective)
    return png, out_width, out_height


def edit(task: SandboxTask, data: bytes, max_pixels: int) -> tuple[bytes, int, int]:
    """The output PNG of ``task`` on input ``data``, and its size.

    Blocking; raises ``ValueError`` for unusable images.
    """
    if task.task_type != REPLACE_TYPE:
        return upscale_capped(data, task.factor, task.max_width, task.max_height, max_pixels)
    if task.mask_data is None or task.prompt is None:
        raise ValueError("the task has no mask or no content")
    png = replace_masked(data, task.mask_data, task.prompt, max_pixels)
    width, height = image_size(data, "imageUrl", max_pixels)
    return png, width, height
