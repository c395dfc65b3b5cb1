"""Inpainting with Pillow alone, for when OpenCV cannot be imported.

The area is filled from the known pixels around it by push-pull (a pyramid of
repeated 2x averaging): going up, each level averages the known pixels below it
(colour premultiplied by how much of the block is known); coming down, each
pixel keeps what is known of it and takes the rest from the level above,
smoothly upsampled. A hole thus gets the colours of its surroundings, nearer
ones weighing more; a flat-colour image is filled with exactly its colour. No
texture is invented, and nothing is drawn from a prompt.

It works on the area's bounding box grown by its own size on each side, so a
small hole in a large image costs little.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from PIL import Image, ImageMath

NOTHING_KNOWN: Final = 128.0
"""The value of every band when the mask covers the whole picture (nothing to fill from)."""


def fill(image: Image.Image, area: Image.Image) -> Image.Image:
    """``image`` with the pixels where ``area`` (``L``, 255 = fill) is set filled in.

    The other pixels come out unchanged. ``image`` is ``L``, ``RGB`` or ``RGBA``.
    """
    box = area.getbbox()
    if box is None:
        return image.copy()
    left, top, right, bottom = box
    grow_x, grow_y = right - left, bottom - top
    window = (
        max(0, left - grow_x),
        max(0, top - grow_y),
        min(image.width, right + grow_x),
        min(image.height, bottom + grow_y),
    )
    part = image.crop(window)
    part_area = area.crop(window)
    known = part_area.point(lambda v: 0 if v else 255).convert("F")
    weights = [_eval(lambda a: a["k"] / 255.0, k=known)]
    while weights[-1].size != (1, 1):
        weights.append(weights[-1].resize(_half(weights[-1].size), Image.Resampling.BOX))
    filled = Image.merge(part.mode, [_fill_band(band, weights) for band in part.split()])
    out = image.copy()
    out.paste(Image.composite(filled, part, part_area), window[:2])
    return out


def _fill_band(band: Image.Image, weights: list[Image.Image]) -> Image.Image:
    values = [_eval(lambda a: a["b"] * a["w"], b=band.convert("F"), w=weights[0])]
    for weight in weights[1:]:
        values.append(values[-1].resize(weight.size, Image.Resampling.BOX))
    top_weight = weights[-1].getpixel((0, 0))
    top_value = values[-1].getpixel((0, 0))
    assert isinstance(top_weight, float) and isinstance(top_value, float)
    estimate = Image.new("F", (1, 1), top_value / top_weight if top_weight > 0 else NOTHING_KNOWN)
    for value, weight in zip(reversed(values[:-1]), reversed(weights[:-1]), strict=True):
        coarse = estimate.resize(value.size, Image.Resampling.BILINEAR)
        estimate = _eval(lambda a: a["c"] + (1.0 - a["w"]) * a["u"], c=value, w=weight, u=coarse)
    return _eval(lambda a: a["e"] + 0.5, e=estimate).convert("L")  # round, then clip


def _half(size: tuple[int, int]) -> tuple[int, int]:
    return (size[0] + 1) // 2, (size[1] + 1) // 2


def _eval(expression: Callable[[dict[str, Any]], Any], **images: Image.Image) -> Image.Image:
    result = ImageMath.lambda_eval(expression, **images)
    assert isinstance(result, Image.Image)
    return result
