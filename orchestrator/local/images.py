"""The local provider's checks of an input image and of the size asked for.

The input's size is read from its header and checked against
``max_input_pixels`` before any pixel is decoded (Pillow's own
``Image.MAX_IMAGE_PIXELS`` bomb check applies on top); the output, and the 4x
working picture of ``realesrgan``, against ``max_output_pixels``.
"""

from __future__ import annotations

import math
import os
from typing import Final

from PIL import ExifTags, Image, ImageOps

from orchestrator.local.errors import InputTooLarge, InvalidImage
from orchestrator.local.realesrgan import REALESRGAN_FACTOR
from schemas.errors import RejectedInput

MIN_SCALE: Final = 1.0
MAX_SCALE: Final = 8.0
DEFAULT_MAX_OUTPUT_PIXELS: Final = 64_000_000
"""About 256 MB as RGBA; the working memory of one job stays a small multiple of it."""

# Pillow plugins allowed to open an input (no EPS, PSD, ... on untrusted bytes).
_INPUT_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_DIRECT_MODES: Final = frozenset({"RGB", "RGBA", "L"})


def check_scale(scale: object) -> float:
    """``scale`` as a float in ``[MIN_SCALE, MAX_SCALE]``; raises :class:`RejectedInput`."""
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise RejectedInput("scale must be a number")
    value = float(scale)
    if not (math.isfinite(value) and MIN_SCALE <= value <= MAX_SCALE):
        raise RejectedInput(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g}")
    return value


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The exact size of the result: each side times ``scale``, rounded, at least 1."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_size(
    width: int,
    height: int,
    scale: float,
    engine: str,
    *,
    max_input_pixels: int,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
) -> tuple[int, int]:
    """Refuse sizes over the caps with :class:`InputTooLarge`; return the output size."""
    _check_input(width, height, max_input_pixels)
    out_w, out_h = output_size(width, height, scale)
    if out_w * out_h > max_output_pixels:
        raise InputTooLarge(
            f"output of {out_w}x{out_h} pixels ({width}x{height} at {scale:g}x) exceeds the "
            f"limit of {max_output_pixels} pixels; lower the scale or send a smaller image"
        )
    work = width * height * REALESRGAN_FACTOR**2
    if engine == "realesrgan" and work > max_output_pixels:
        raise InputTooLarge(
            f"realesrgan works at {REALESRGAN_FACTOR}x internally: {width}x{height} would need "
            f"{work} pixels, over the limit of {max_output_pixels}; send a smaller image"
        )
    return out_w, out_h


def probe_image(path: str | os.PathLike[str], max_input_pixels: int) -> tuple[int, int]:
    """The image's ``(width, height)`` from its header, without decoding any pixel.

    Raises :class:`InvalidImage` for a file Pillow cannot identify (in the allowed
    formats) and :class:`InputTooLarge` past ``max_input_pixels`` or Pillow's own
    decompression-bomb limit.
    """
    try:
        with Image.open(path, formats=_INPUT_FORMATS) as img:
            width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputTooLarge(f"input image refused as too large: {exc}") from exc
    except Exception as exc:  # any parse failure on untrusted bytes
        raise InvalidImage(f"input is not a readable image ({_describe(exc, path)})") from exc
    _check_input(width, height, max_input_pixels)
    return width, height


_TURNED: Final = frozenset({5, 6, 7, 8})
"""EXIF orientations that swap width and height."""


def upright_size(path: str | os.PathLike[str], max_input_pixels: int) -> tuple[int, int]:
    """The image's ``(width, height)`` once its EXIF orientation is applied (as :func:`decode`
    does), from its header; raises like :func:`probe_image`."""
    width, height = probe_image(path, max_input_pixels)
    try:
        with Image.open(path, formats=_INPUT_FORMATS) as img:
            orientation = img.getexif().get(ExifTags.Base.Orientation)
    except Exception:  # a broken EXIF block: decode() reports what matters
        orientation = None
    return (height, width) if orientation in _TURNED else (width, height)


def decode(src: str) -> Image.Image:
    """The pixels, upright (EXIF orientation applied), as L, RGB or RGBA."""
    try:
        with Image.open(src, formats=_INPUT_FORMATS) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
        if image.mode in _DIRECT_MODES:
            return image
        bands = image.getbands()
        has_alpha = "A" in bands or "a" in bands or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputTooLarge(f"input image refused as too large: {exc}") from exc
    except Exception as exc:  # truncated or corrupt data in any decoder
        raise InvalidImage(f"input is not a readable image ({_describe(exc, src)})") from exc


def _check_input(width: int, height: int, max_input_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has invalid dimensions {width}x{height}")
    if width * height > max_input_pixels:
        raise InputTooLarge(
            f"input image of {width}x{height} pixels exceeds the limit of {max_input_pixels} pixels"
        )


def _describe(exc: Exception, path: str | os.PathLike[str]) -> str:
    text = str(exc).replace(os.fspath(path), "<file>")  # no local paths in messages
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
