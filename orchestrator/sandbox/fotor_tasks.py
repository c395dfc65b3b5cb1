"""A sandbox Fotor task: its record, its statuses, and the resize it performs.

Statuses are Fotor's: 0 running, 1 succeeded, 2 failed. The resize keeps the
aspect ratio and caps the output at the task's ``max_image_width`` x
``max_image_height``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image

from orchestrator.sandbox.imaging import output_size, upscale_image

RUNNING, SUCCEEDED, FAILED = 0, 1, 2


@dataclass(slots=True)
class SandboxTask:
    id: str
    image_url: str | None
    image_data: bytes | None = field(repr=False)
    factor: float
    max_width: int
    max_height: int
    base_url: str
    created_ms: int
    updated_ms: int
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
