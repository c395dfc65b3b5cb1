"""Real (local) upscaling with Pillow for the sandbox providers.

These functions are CPU-bound and blocking: call them from async code through
``asyncio.to_thread``, never on the event loop.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from PIL import Image

# Modes that LANCZOS resampling and PNG both handle as they are.
_DIRECT_MODES = frozenset({"RGB", "RGBA", "L", "LA"})

# What Pillow raises for bytes that are not a (safe) image.
UNREADABLE_IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


# Pillow names the buffer it read in its messages: "<_io.BytesIO object at 0x...>".
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def unreadable_message(exc: BaseException) -> str:
    """Why an input is not a readable image, without Python's reprs of our objects."""
    detail = _OBJECT_REPR.sub("the input", str(exc)).strip()
    if not detail:
        detail = type(exc).__name__
    return f"input is not a readable image: {detail}"


@dataclass(frozen=True, slots=True)
class UpscaledImage:
    png: bytes
    jpeg: bytes
    width: int
    height: int


def output_size(width: int, height: int, factor: float) -> tuple[int, int]:
    return max(1, round(width * factor)), max(1, round(height * factor))


def upscale_image(data: bytes, factor: float, max_pixels: int) -> bytes:
    """Resize ``data`` by ``factor`` with LANCZOS and return PNG bytes.

    Raises ``ValueError`` if ``data`` is not an image or the input or output
    would exceed ``max_pixels``.
    """
    return _encode(_upscale(data, factor, max_pixels), "PNG")


def upscale_image_variants(
    data: bytes, factor: float, max_pixels: int, jpeg_quality: int = 85
) -> UpscaledImage:
    """Like ``upscale_image`` but also returns a compressed JPEG and the size."""
    image = _upscale(data, factor, max_pixels)
    png = _encode(image, "PNG")
    jpeg = _encode(_flatten(image), "JPEG", quality=jpeg_quality)
    return UpscaledImage(png=png, jpeg=jpeg, width=image.width, height=image.height)


def _upscale(data: bytes, factor: float, max_pixels: int) -> Image.Image:
    if not factor > 0:
        raise ValueError("upscale factor must be positive")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ValueError(f"input image is too large ({width}x{height})")
            new_size = output_size(width, height, factor)
            if new_size[0] * new_size[1] > max_pixels:
                raise ValueError(
                    f"output image would be too large ({new_size[0]}x{new_size[1]}, "
                    f"limit {max_pixels} pixels)"
                )
            opened.load()
            return _normalise_mode(opened).resize(new_size, Image.Resampling.LANCZOS)
    except ValueError:
        raise
    except UNREADABLE_IMAGE_ERRORS as exc:
        raise ValueError(unreadable_message(exc)) from None


def _normalise_mode(image: Image.Image) -> Image.Image:
    if image.mode in _DIRECT_MODES:
        return image
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode == "RGB" or image.mode == "L":
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _encode(image: Image.Image, fmt: str, **params: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()
