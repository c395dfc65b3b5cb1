"""The sandbox's stand-in for Fotor's AI Replace: paint the masked area in the prompt's colour.

No model runs here. The edit is real and deterministic, so a test can check it
pixel by pixel:

- The mask has the input's size. A mask pixel marks the area to replace when its
  luminance (ITU-R 601-2, as Pillow's ``L`` mode) is 128 or more; a darker pixel
  keeps the input's. A fully transparent mask pixel (alpha 0) keeps it too.
  (This convention is the project's assumption: Fotor's page does not say.)
- Every marked pixel becomes :func:`prompt_colour` (opaque); every other pixel
  stays exactly as it was. The output is a PNG of the input's size, RGB, or RGBA
  when the input has transparency.

These functions are CPU-bound and blocking: call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import io
import warnings

from PIL import Image

from orchestrator.domain.masks import replace_area
from orchestrator.sandbox.imaging import UNREADABLE_IMAGE_ERRORS, unreadable_message


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    """The fill colour for ``prompt``: the first three bytes of its SHA-256 (UTF-8)."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return digest[0], digest[1], digest[2]


def image_size(data: bytes, what: str, max_pixels: int) -> tuple[int, int]:
    """The width and height from ``data``'s header, or ``ValueError`` naming ``what``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
    except UNREADABLE_IMAGE_ERRORS as exc:
        raise ValueError(f"{what}: {unreadable_message(exc)}") from None
    if width < 1 or height < 1:
        raise ValueError(f"{what}: the image is empty")
    if width * height > max_pixels:
        raise ValueError(f"{what}: the image is too large ({width}x{height})")
    return width, height


def _decoded(data: bytes, what: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return opened.copy()
    except UNREADABLE_IMAGE_ERRORS as exc:
        raise ValueError(f"{what}: {unreadable_message(exc)}") from None


def replace_masked(image: bytes, mask: bytes, prompt: str, max_pixels: int) -> bytes:
    """PNG bytes of ``image`` with the area ``mask`` marks painted in the prompt's colour.

    Raises ``ValueError`` when either is not a readable image, is over
    ``max_pixels`` or the two sizes differ.
    """
    size = image_size(image, "imageUrl", max_pixels)
    mask_size = image_size(mask, "maskImageUrl", max_pixels)
    if size != mask_size:
        raise ValueError(
            f"the mask is {mask_size[0]}x{mask_size[1]} but the image is {size[0]}x{size[1]}"
        )
    source = _decoded(image, "imageUrl")
    has_alpha = "A" in source.getbands() or "transparency" in source.info
    output = source.convert("RGBA" if has_alpha else "RGB")
    fill = Image.new(output.mode, output.size, (*prompt_colour(prompt), 255)[: len(output.mode)])
    output.paste(fill, mask=replace_area(_decoded(mask, "maskImageUrl")))
    buf = io.BytesIO()
    output.save(buf, format="PNG")
    return buf.getvalue()
