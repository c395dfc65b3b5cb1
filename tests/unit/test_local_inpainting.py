"""The local provider's replace: the mask rule and inpainting, with OpenCV and with Pillow."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from orchestrator.domain.masks import replace_area
from orchestrator.local import diffusion, inpainting
from orchestrator.local.errors import InvalidMask
from orchestrator.local.inpainting import check_inputs, inpaint, replace_file

MAX_PIXELS = 16_000_000
HOLE = (40, 30, 60, 50)  # left, top, right, bottom (inclusive)

needs_cv2 = pytest.mark.skipif(
    inpainting.opencv() is None,
    reason="OpenCV inpainting needs opencv-python-headless (the local extra, installed by CI)",
)
# Both paths: OpenCV's Telea, and the Pillow-only fill used when cv2 is missing.
METHODS = [pytest.param(True, id="telea", marks=needs_cv2), pytest.param(False, id="diffusion")]


def hole_area(size: tuple[int, int] = (100, 80), box: tuple[int, ...] = HOLE) -> Image.Image:
    area = Image.new("L", size, 0)
    ImageDraw.Draw(area).rectangle(box, fill=255)
    return area


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    bands = len(mode)
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * bands))


def unmasked_equal(a: Image.Image, b: Image.Image, area: Image.Image) -> bool:
    keep = area.point(lambda v: 0 if v else 255)
    blank = Image.new(a.mode, a.size)
    return Image.composite(a, blank, keep).tobytes() == Image.composite(b, blank, keep).tobytes()


# --- the mask rule -------------------------------------------------------------------


def test_luminance_of_128_or_more_replaces_and_darker_keeps() -> None:
    mask = Image.new("L", (4, 1))
    mask.putdata([0, 127, 128, 255])

    assert list(replace_area(mask).tobytes()) == [0, 0, 255, 255]


def test_colour_masks_use_luminance() -> None:
    mask = Image.new("RGB", (3, 1))
    mask.putdata([(255, 255, 255), (0, 0, 255), (0, 255, 0)])  # white, blue (29), green (150)

    assert list(replace_area(mask).tobytes()) == [255, 0, 255]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_fully_transparent_pixels_are_kept_whatever_their_colour(mode: str) -> None:
    white = (255, 255, 255) if mode == "RGBA" else (255,)
    mask = Image.new(mode, (3, 1))
    mask.putdata([(*white, 0), (*white, 1), (*white, 255)])

    assert list(replace_area(mask).tobytes()) == [0, 255, 255]


# --- inpainting ----------------------------------------------------------------------


@pytest.mark.parametrize("use_opencv", METHODS)
@pytest.mark.parametrize(
    ("mode", "colour"), [("RGB", (10, 200, 50)), ("L", 77), ("RGBA", (30, 60, 90, 200))]
)
def test_a_hole_in_a_flat_colour_is_filled_with_that_colour(
    use_opencv: bool, mode: str, colour: int | tuple[int, ...]
) -> None:
    image = Image.new(mode, (100, 80), colour)
    ImageDraw.Draw(image).rectangle(HOLE, fill=0 if mode == "L" else (255,) * len(mode))
    area = hole_area()

    result = inpaint(image, area, use_opencv=use_opencv)

    assert (result.mode, result.size) == (image.mode, image.size)
    expected = colour if isinstance(colour, tuple) else (colour,)
    for xy in [(50, 40), (41, 31), (59, 49), (45, 45)]:
        got = result.getpixel(xy)
        got = got if isinstance(got, tuple) else (got,)
        assert all(abs(g - e) <= 4 for g, e in zip(got, expected, strict=True)), (xy, got)
    assert unmasked_equal(result, image, area)


@pytest.mark.parametrize("use_opencv", METHODS)
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_unmasked_pixels_come_out_identical(use_opencv: bool, mode: str) -> None:
    image = noise((100, 80), mode)
    area = hole_area()

    result = inpaint(image, area, use_opencv=use_opencv)

    assert unmasked_equal(result, image, area)
    assert not unmasked_equal(result, image, Image.new("L", image.size, 0))  # hole changed


@pytest.mark.parametrize("use_opencv", METHODS)
def test_a_hole_between_two_colours_takes_the_colour_of_its_side(use_opencv: bool) -> None:
    image = Image.new("L", (100, 40), 0)
    image.paste(200, (50, 0, 100, 40))
    area = hole_area((100, 40), (30, 10, 69, 29))

    result = inpaint(image, area, use_opencv=use_opencv)

    left, right = result.getpixel((32, 20)), result.getpixel((67, 20))
    assert isinstance(left, int) and isinstance(right, int)
    assert left < 60 < 140 < right


@pytest.mark.parametrize("use_opencv", METHODS)
def test_an_empty_mask_changes_nothing(use_opencv: bool) -> None:
    image = noise((30, 20))

    result = inpaint(image, Image.new("L", image.size, 0), use_opencv=use_opencv)

    assert result.tobytes() == image.tobytes()


def test_a_mask_over_everything_still_gives_an_image_of_the_size() -> None:
    result = diffusion.fill(noise((30, 20)), Image.new("L", (30, 20), 255))

    assert result.size == (30, 20)
    assert result.getpixel((10, 10)) == (128, 128, 128)


# --- files, as the worker runs them --------------------------------------------------


def save(path: Path, image: Image.Image) -> str:
    image.save(path, format="PNG")
    return str(path)


@pytest.mark.parametrize("use_opencv", METHODS)
def test_replace_file_writes_a_png_of_the_input_size(tmp_path: Path, use_opencv: bool) -> None:
    image = noise((100, 80))
    area = hole_area()
    dst = tmp_path / "out.png"

    width, height, method = replace_file(
        save(tmp_path / "in.png", image),
        save(tmp_path / "mask.png", area.convert("RGB")),
        str(dst),
        MAX_PIXELS,
        use_opencv=use_opencv,
    )

    assert (width, height) == (100, 80)
    assert method == ("telea" if use_opencv else "diffusion")
    with Image.open(dst) as out:
        assert (out.format, out.size) == ("PNG", (100, 80))
        assert unmasked_equal(out.convert("RGB"), image, area)
        assert ImageChops.difference(out.convert("RGB"), image).getbbox() is not None


def test_a_mask_of_another_size_is_refused(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", noise((100, 80)))
    mask = save(tmp_path / "mask.png", hole_area((80, 100)))

    with pytest.raises(InvalidMask, match="the mask is 80x100 pixels but the image is 100x80"):
        check_inputs(src, mask, MAX_PIXELS)
    with pytest.raises(InvalidMask):
        replace_file(src, mask, str(tmp_path / "out.png"), MAX_PIXELS)
    assert not (tmp_path / "out.png").exists()


def test_a_mask_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", noise((10, 10)))
    (tmp_path / "mask.png").write_bytes(b"not an image")

    with pytest.raises(InvalidMask, match="the mask"):
        check_inputs(src, str(tmp_path / "mask.png"), MAX_PIXELS)


def test_sizes_are_compared_upright(tmp_path: Path) -> None:
    """A photo stored sideways with an EXIF turn matches a mask drawn on the upright picture."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    buf = io.BytesIO()
    noise((100, 80)).save(buf, format="JPEG", exif=exif)
    (tmp_path / "in.jpg").write_bytes(buf.getvalue())
    mask = save(tmp_path / "mask.png", hole_area((80, 100), (10, 10, 20, 20)))

    assert check_inputs(str(tmp_path / "in.jpg"), mask, MAX_PIXELS) == (80, 100)
