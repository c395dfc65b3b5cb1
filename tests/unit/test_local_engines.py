"""The local provider's upscaling engines, run in this process."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.local import engines, images
from orchestrator.local.engines import available_engines, upscale_file
from orchestrator.local.errors import (
    EngineUnavailable,
    InputTooLarge,
    InvalidImage,
    UnknownEngine,
)
from schemas.errors import RejectedInput

MAX_PIXELS = 16_000_000


def write(path: Path, image: Image.Image, fmt: str = "PNG") -> str:
    image.save(path, format=fmt)
    return str(path)


def gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    return Image.linear_gradient("L").resize((width, height)).convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def huge_bilevel_png(width: int, height: int) -> bytes:
    """A valid mode "1" PNG of ``width`` x ``height``, all black, a few KB on disk.

    Compressed row by row, so making it never holds the pixels in memory.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((40, 30), 2, (80, 60)),
        ((37, 23), 1.5, (56, 34)),  # round(55.5) = 56, round(34.5) = 34
        ((41, 27), 2.5, (102, 68)),
        ((10, 7), 8, (80, 56)),
        ((10, 7), 1, (10, 7)),
    ],
)
def test_lanczos_gives_exactly_the_requested_size(
    tmp_path: Path, size: tuple[int, int], scale: float, expected: tuple[int, int]
) -> None:
    src = write(tmp_path / "in.png", gradient(*size))
    dst = tmp_path / "out.png"

    assert upscale_file(src, str(dst), scale, "lanczos", MAX_PIXELS) == expected

    with Image.open(dst) as out:
        assert (out.format, out.size) == ("PNG", expected)
    assert not (tmp_path / "out.png.part").exists()


@pytest.mark.parametrize(
    ("mode", "expected_mode"),
    [("RGBA", "RGBA"), ("L", "L"), ("LA", "RGBA"), ("P", "RGB"), ("1", "RGB")],
)
def test_modes_are_kept_or_made_rgb(tmp_path: Path, mode: str, expected_mode: str) -> None:
    src = write(tmp_path / "in.png", gradient(20, 10, mode))
    dst = tmp_path / "out.png"

    upscale_file(src, str(dst), 2, "lanczos", MAX_PIXELS)

    with Image.open(dst) as out:
        assert (out.mode, out.size) == (expected_mode, (40, 20))


def test_jpeg_input_becomes_png(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jpg", gradient(32, 16), "JPEG")
    dst = tmp_path / "out.png"

    assert upscale_file(src, str(dst), 3, "lanczos", MAX_PIXELS) == (96, 48)
    with Image.open(dst) as out:
        assert out.format == "PNG"


@pytest.mark.parametrize(
    ("size", "scale"), [((40, 30), 2), ((37, 23), 1.5), ((25, 19), 3), ((16, 9), 4)]
)
def test_pyanime4k_gives_exactly_the_requested_size(
    tmp_path: Path, size: tuple[int, int], scale: float
) -> None:
    pytest.importorskip("pyanime4k", reason="pyanime4k is not installed (pip install pyanime4k)")
    assert "pyanime4k" in available_engines()
    src = write(tmp_path / "in.png", gradient(*size))
    dst = tmp_path / "out.png"

    expected = images.output_size(*size, scale)
    assert upscale_file(src, str(dst), scale, "pyanime4k", MAX_PIXELS) == expected

    with Image.open(dst) as out:
        assert out.size == expected


def test_pyanime4k_is_not_plain_lanczos(tmp_path: Path) -> None:
    pytest.importorskip("pyanime4k", reason="pyanime4k is not installed (pip install pyanime4k)")
    image = Image.new("RGB", (48, 48), "white")
    image.paste((0, 0, 0), (12, 12, 36, 36))  # hard edges: where a CNN and LANCZOS differ
    src = write(tmp_path / "in.png", image)

    upscale_file(src, str(tmp_path / "a4k.png"), 2, "pyanime4k", MAX_PIXELS)
    upscale_file(src, str(tmp_path / "lz.png"), 2, "lanczos", MAX_PIXELS)

    with Image.open(tmp_path / "a4k.png") as a4k, Image.open(tmp_path / "lz.png") as lz:
        assert a4k.tobytes() != lz.tobytes()


def test_realesrgan_upscales_across_tiles_or_says_what_is_missing(tmp_path: Path) -> None:
    # A left-to-right ramp of 140 x 12 spans two 128-px tiles; the result must be one
    # seamless ramp (without the tiles' overlap the step at the seam is about 9).
    image = Image.linear_gradient("L").rotate(90).resize((140, 12)).convert("RGB")
    src = write(tmp_path / "in.png", image)
    dst = tmp_path / "out.png"
    if "realesrgan" not in available_engines():
        with pytest.raises(EngineUnavailable, match="realesrgan"):
            upscale_file(src, str(dst), 2, "realesrgan", MAX_PIXELS)
        return

    assert upscale_file(src, str(dst), 2, "realesrgan", MAX_PIXELS) == (280, 24)

    reference = image.resize((280, 24), Image.Resampling.LANCZOS).convert("L")
    with Image.open(dst) as out:
        got = out.convert("L").tobytes()
    diffs = [abs(a - b) for a, b in zip(got, reference.tobytes(), strict=True)]
    assert sum(diffs) / len(diffs) < 4  # the ramp stays a ramp: tiles are in place
    seam = max(abs(got[y * 280 + 256] - got[y * 280 + 255]) for y in range(24))
    assert seam <= 5  # where the tiles meet (x = 128 * 2), like any other step of the ramp


def test_pixel_cap_refuses_a_huge_image_from_its_header(tmp_path: Path) -> None:
    data = huge_bilevel_png(20_000, 20_000)
    assert len(data) < 100_000  # small on disk, 400 megapixels once decoded
    src = tmp_path / "huge.png"
    src.write_bytes(data)
    dst = tmp_path / "out.png"

    with pytest.raises(InputTooLarge):
        upscale_file(str(src), str(dst), 2, "lanczos", MAX_PIXELS)
    assert not dst.exists()


def test_pixel_cap_names_the_size_under_pillows_own_limit(tmp_path: Path) -> None:
    src = tmp_path / "big.png"
    src.write_bytes(huge_bilevel_png(3000, 2000))

    with pytest.raises(InputTooLarge, match="3000x2000"):
        upscale_file(str(src), str(tmp_path / "out.png"), 2, "lanczos", 1_000_000)
    assert images.probe_image(src, 6_000_000) == (3000, 2000)


def test_output_cap_refuses_a_scale_too_large_for_the_input(tmp_path: Path) -> None:
    src = write(tmp_path / "in.png", gradient(100, 100))

    with pytest.raises(InputTooLarge, match="800x800"):
        upscale_file(
            str(src), str(tmp_path / "out.png"), 8, "lanczos", 10**6, max_output_pixels=10**5
        )


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"%PDF-1.4\n"],
)
def test_non_images_are_invalid_image(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(data)

    with pytest.raises(InvalidImage) as err:
        upscale_file(str(src), str(tmp_path / "out.png"), 2, "lanczos", MAX_PIXELS)
    assert str(tmp_path) not in err.value.message  # no local paths in messages


def test_truncated_pixel_data_is_invalid_image(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(buf, format="PNG")
    src = tmp_path / "cut.png"
    src.write_bytes(buf.getvalue()[:2000])  # the header is sound, the pixel data cut off

    with pytest.raises(InvalidImage):
        upscale_file(str(src), str(tmp_path / "out.png"), 2, "lanczos", MAX_PIXELS)
    assert not (tmp_path / "out.png").exists()
    assert not (tmp_path / "out.png.part").exists()


def test_unknown_engine_and_bad_scale_are_rejected(tmp_path: Path) -> None:
    src = write(tmp_path / "in.png", gradient(4, 4))

    with pytest.raises(UnknownEngine):
        upscale_file(src, str(tmp_path / "o.png"), 2, "waifu9000", MAX_PIXELS)
    for scale in (0.5, 8.5, float("nan"), float("inf")):
        with pytest.raises(RejectedInput, match="scale"):
            upscale_file(src, str(tmp_path / "o.png"), scale, "lanczos", MAX_PIXELS)


def test_available_engines_lists_lanczos_and_only_known_engines() -> None:
    found = available_engines()

    assert "lanczos" in found
    assert set(found) <= set(engines.ENGINES)
    assert engines.default_engine() == found[0]


def test_errors_survive_the_trip_through_a_worker_process() -> None:
    for error in (InputTooLarge("too big"), InvalidImage("nope"), EngineUnavailable("gone")):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.message, copy.code) == (type(error), error.message, error.code)
