"""Replace for the local provider: classic inpainting, run in worker processes.

:func:`replace_file` reads an image and its mask, repaints the masked area
(:mod:`orchestrator.domain.masks` says which pixels) from the pixels around it,
and writes a PNG of the image's own size in which every unmasked pixel is the
input's, exactly (they are copied back after inpainting). Like
:func:`~orchestrator.local.engines.upscale_file` it is a top-level function with
plain arguments for a ``ProcessPoolExecutor``, and blocks.

The prompt is accepted by the local provider and ignored: this is not a
generative model. It fills the area so that it blends with its surroundings,
which is enough to try the replace pipeline offline, not to draw what the prompt
asks for.

Methods:

- ``telea``: OpenCV's Telea method (``cv2.inpaint(..., cv2.INPAINT_TELEA)``),
  from ``opencv-python-headless`` (the ``local`` extra).
- ``diffusion``: Pillow alone (:mod:`orchestrator.local.diffusion`), when ``cv2``
  cannot be imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
from typing import Any, Final

from PIL import Image

from orchestrator.domain.masks import is_empty, replace_area
from orchestrator.local import diffusion
from orchestrator.local.engines import write_png
from orchestrator.local.errors import EngineFailed, InvalidMask
from orchestrator.local.images import (
    DEFAULT_MAX_OUTPUT_PIXELS,
    check_size,
    decode,
    upright_size,
)
from schemas.errors import RejectedInput

# The engines' log: operators filter on this name.
logger = logging.getLogger("orchestrator.local.engines")

TELEA: Final = "telea"
DIFFUSION: Final = "diffusion"
TELEA_RADIUS: Final = 3
"""How far around each pixel Telea's method looks, in pixels (OpenCV's own example uses 3)."""


@functools.cache
def opencv() -> Any | None:
    """The ``cv2`` module (typed ``Any``: optional and native), or ``None`` when missing."""
    try:
        return importlib.import_module("cv2")
    except Exception:  # not installed, or its native library does not load here
        logger.info("cv2 is not importable; replace falls back to Pillow's diffusion")
        return None


def expected_method() -> str:
    """The method a worker will use, found without importing ``cv2`` into this process
    (the worker reports the one it used)."""
    return TELEA if importlib.util.find_spec("cv2") is not None else DIFFUSION


def method() -> str:
    """The inpainting method this process uses: ``telea`` with OpenCV, else ``diffusion``."""
    return TELEA if opencv() is not None else DIFFUSION


def inpaint(image: Image.Image, area: Image.Image, *, use_opencv: bool = True) -> Image.Image:
    """``image`` (``L``, ``RGB`` or ``RGBA``) with ``area`` (``L``, 255 = replace) repainted.

    Every pixel outside ``area`` is the input's, exactly.
    """
    if is_empty(area):
        return image.copy()
    cv2 = opencv() if use_opencv else None
    filled = diffusion.fill(image, area) if cv2 is None else _telea(cv2, image, area)
    if filled.size != image.size or filled.mode != image.mode:  # never hand out a wrong shape
        raise EngineFailed(f"inpainting produced {filled.mode} {filled.size}, expected the input's")
    return Image.composite(filled, image, area)


def _telea(cv2: Any, image: Image.Image, area: Image.Image) -> Image.Image:
    np = importlib.import_module("numpy")
    mask = np.asarray(area)
    # Telea works on 1 or 3 channels of 8 bits: alpha goes on its own.
    parts = [image.convert("RGB"), image.getchannel("A")] if image.mode == "RGBA" else [image]
    try:
        done = [
            Image.fromarray(cv2.inpaint(np.asarray(part), mask, TELEA_RADIUS, cv2.INPAINT_TELEA))
            for part in parts
        ]
    except Exception as exc:  # OpenCV's errors are its own cv2.error
        raise EngineFailed(f"OpenCV inpainting failed: {type(exc).__name__}: {exc}") from exc
    if image.mode == "RGBA":
        return Image.merge("RGBA", [*done[0].split(), done[1]])
    return done[0]


def replace_file(
    src: str,
    mask_src: str,
    dst: str,
    max_input_pixels: int,
    *,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
    use_opencv: bool = True,
) -> tuple[int, int, str]:
    """Repaint the masked area of the image at ``src`` into a PNG at ``dst``.

    Returns the result's ``(width, height, method)``. A mask that cannot be read,
    or whose size differs from the image's, raises :class:`InvalidMask`.
    """
    check_inputs(src, mask_src, max_input_pixels, max_output_pixels=max_output_pixels)
    image = decode(src)
    try:
        mask = decode(mask_src)
    except RejectedInput as exc:
        raise InvalidMask(f"the mask: {exc.message}") from exc
    if mask.size != image.size:
        raise InvalidMask(mask_mismatch(mask.size, image.size))
    result = inpaint(image, replace_area(mask), use_opencv=use_opencv)
    write_png(result, dst)
    return result.width, result.height, method() if use_opencv else DIFFUSION


def check_inputs(
    src: str,
    mask_src: str,
    max_input_pixels: int,
    *,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
) -> tuple[int, int]:
    """The image's upright ``(width, height)``, from the headers of the image and its mask.

    Raises ``InvalidImage`` or ``InputTooLarge`` for the image and :class:`InvalidMask`
    for a mask that cannot be read or is not of the image's (upright) size.
    """
    size = upright_size(src, max_input_pixels)
    check_size(
        *size,
        1.0,
        DIFFUSION,
        max_input_pixels=max_input_pixels,
        max_output_pixels=max_output_pixels,
    )
    try:
        mask_size = upright_size(mask_src, max_input_pixels)
    except RejectedInput as exc:
        raise InvalidMask(f"the mask: {exc.message}") from exc
    if mask_size != size:
        raise InvalidMask(mask_mismatch(mask_size, size))
    return size


def mask_mismatch(mask: tuple[int, int], image: tuple[int, int]) -> str:
    """Why a mask of another size than its image is refused."""
    return (
        f"the mask is {mask[0]}x{mask[1]} pixels but the image is {image[0]}x{image[1]}; "
        "send a mask of the image's size"
    )
