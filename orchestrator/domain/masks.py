"""The mask of a replace job: which pixels to repaint, which to keep.

The rule (an assumption: Fotor's page does not say) is the same for every
provider, the local provider's inpainting and the sandbox's Fotor alike: a pixel
is to be replaced when its luminance is :data:`REPLACE_FROM` (128) or more, so
white marks the area and black keeps; a fully transparent pixel (alpha 0) is
kept whatever its colour.
"""

from __future__ import annotations

from typing import Final

from PIL import Image, ImageChops

REPLACE_FROM: Final = 128
"""The lowest luminance (0..255) that marks a pixel to replace."""

REPLACE: Final = 255
KEEP: Final = 0


def replace_area(mask: Image.Image) -> Image.Image:
    """The area to repaint as an ``L`` image: :data:`REPLACE` (255) there, :data:`KEEP` (0)
    elsewhere. Luminance is Pillow's ITU-R 601-2 luma (``convert("L")``); any
    transparency (an alpha band, or a palette's transparent colour) counts."""
    rgba = mask.convert("RGBA")
    bright = rgba.convert("L").point(lambda v: REPLACE if v >= REPLACE_FROM else KEEP)
    opaque = rgba.getchannel("A").point(lambda a: REPLACE if a > 0 else KEEP)
    return ImageChops.darker(bright, opaque)


def is_empty(area: Image.Image) -> bool:
    """Whether ``area`` (from :func:`replace_area`) marks no pixel at all."""
    return area.getbbox() is None
