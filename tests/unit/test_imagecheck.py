from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.fetch.imagecheck import (
    SNIFF_BYTES,
    extension_for,
    image_size,
    inspect_image,
    sniff_format,
    sniff_image,
)
from schemas.errors import ResultInvalid

MAX_PIXELS = 50_000_000


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color=(200, 10, 10) if mode == "RGB" else 1).save(buf, format=fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` 1-bit pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)  # far fewer rows than claimed
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def write(tmp_path: Path, data: bytes, name: str = "result.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


FORMATS = [
    ("PNG", "png", "image/png", "png"),
    ("JPEG", "jpeg", "image/jpeg", "jpg"),
    ("WEBP", "webp", "image/webp", "webp"),
    ("GIF", "gif", "image/gif", "gif"),
    ("TIFF", "tiff", "image/tiff", "tiff"),
    ("BMP", "bmp", "image/bmp", "bmp"),
]


@pytest.mark.parametrize(("pillow", "fmt", "content_type", "ext"), FORMATS)
def test_sniff_and_inspect_each_format(
    tmp_path: Path, pillow: str, fmt: str, content_type: str, ext: str
) -> None:
    data = image_bytes(pillow)
    assert sniff_format(data[:SNIFF_BYTES]) == fmt
    facts = inspect_image(write(tmp_path, data), MAX_PIXELS)
    assert facts == (fmt, 40, 30, content_type)
    assert facts.ext == ext == extension_for(fmt)


def test_lossless_and_animated_webp(tmp_path: Path) -> None:
    lossless = io.BytesIO()
    Image.new("RGBA", (33, 17)).save(lossless, format="WEBP", lossless=True)
    assert inspect_image(write(tmp_path, lossless.getvalue()), MAX_PIXELS)[1:3] == (33, 17)

    frames = [Image.new("RGB", (20, 10), color=c) for c in ("red", "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, format="WEBP", save_all=True, append_images=frames[1:])
    assert inspect_image(write(tmp_path, animated.getvalue()), MAX_PIXELS)[1:3] == (20, 10)


@pytest.mark.parametrize(
    "head",
    [b"", b"\x89PN", b"hello world, not an image", b"<html><body>", b"RIFF\x00\x00\x00\x00WAVE"],
)
def test_sniff_rejects_non_images(head: bytes) -> None:
    assert sniff_format(head) is None


@pytest.mark.parametrize(
    ("head", "any_format"),
    [
        (b"\x00\x00\x00\x18ftypavif" + b"\x00" * 4, "avif"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 4, "heic"),
        (b"BM\x00\x00", "bmp"),
    ],
)
def test_a_result_must_be_a_format_that_can_be_checked(head: bytes, any_format: str) -> None:
    # The one table knows these (an input's media type for a provider), but a
    # result in them, or a BMP without its whole header, is not an image we check.
    assert sniff_image(head) == any_format
    assert sniff_format(head) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"<html>expired</html>", b"{'error': 'nope'}", os.urandom(4096)],
    ids=["empty", "html", "json", "random"],
)
def test_non_images_are_invalid(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ResultInvalid):
        inspect_image(write(tmp_path, data), MAX_PIXELS)


def test_missing_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(ResultInvalid, match="cannot read"):
        inspect_image(tmp_path / "nope.png", MAX_PIXELS)


def test_magic_bytes_followed_by_garbage(tmp_path: Path) -> None:
    for magic in (
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0",
        b"GIF89a",
        b"RIFF\x00\x00\x00\x00WEBP",
    ):
        path = write(tmp_path, magic + b"\x13" * 200)
        with pytest.raises(ResultInvalid, match=r"not a readable image|corrupt|truncated"):
            inspect_image(path, MAX_PIXELS)


def test_png_with_flipped_byte_fails_crc(tmp_path: Path) -> None:
    data = bytearray(image_bytes("PNG", (64, 64)))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    with pytest.raises(ResultInvalid, match="corrupt"):
        inspect_image(write(tmp_path, bytes(data)), MAX_PIXELS)


def test_truncated_png(tmp_path: Path) -> None:
    data = image_bytes("PNG", (64, 64))
    with pytest.raises(ResultInvalid, match="truncated"):
        inspect_image(write(tmp_path, data[: len(data) - 20]), MAX_PIXELS)


def test_png_without_idat(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    with pytest.raises(ResultInvalid):
        inspect_image(write(tmp_path, data), MAX_PIXELS)


def test_our_pixel_limit(tmp_path: Path) -> None:
    path = write(tmp_path, image_bytes("PNG", (100, 100)))
    assert inspect_image(path, 10_000)[1:3] == (100, 100)
    with pytest.raises(ResultInvalid, match="exceeds the limit of 9999 pixels"):
        inspect_image(path, 9_999)


@pytest.mark.parametrize("pillow", ["JPEG", "TIFF", "GIF", "WEBP", "BMP"])
def test_our_pixel_limit_for_other_formats(tmp_path: Path, pillow: str) -> None:
    path = write(tmp_path, image_bytes(pillow, (100, 100)))
    with pytest.raises(ResultInvalid, match="exceeds the limit"):
        inspect_image(path, 9_999)


def test_png_bomb_header_refused_before_pillow(tmp_path: Path) -> None:
    path = write(tmp_path, png_bomb(100_000, 100_000))
    assert path.stat().st_size < 200
    with pytest.raises(ResultInvalid, match="100000x100000"):
        inspect_image(path, MAX_PIXELS)


def test_pillow_bomb_limit_also_turned_into_result_invalid(tmp_path: Path) -> None:
    # Our limit is generous here; Pillow's own DecompressionBombError fires.
    path = write(tmp_path, png_bomb(100_000, 100_000))
    with pytest.raises(ResultInvalid, match="decompression bomb"):
        inspect_image(path, 10**12)


def test_pillow_bomb_warning_turned_into_result_invalid(tmp_path: Path) -> None:
    # Between Pillow's warning and error thresholds; pytest runs with warnings
    # as errors, so Pillow raises the DecompressionBombWarning.
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    side = int((limit * 1.5) ** 0.5)
    path = write(tmp_path, png_bomb(side, side))
    with pytest.raises(ResultInvalid, match="decompression bomb"):
        inspect_image(path, 10**12)


def test_webp_bomb_header_refused_before_pillow_reads_it(tmp_path: Path) -> None:
    # VP8X header claiming a 16384 x 16384 canvas.
    vp8x = b"\x00" * 4 + (16383).to_bytes(3, "little") + (16383).to_bytes(3, "little")
    data = b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8x)) + b"WEBP" + b"VP8X"
    data += struct.pack("<I", len(vp8x)) + vp8x
    with pytest.raises(ResultInvalid, match="16384x16384"):
        inspect_image(write(tmp_path, data), MAX_PIXELS)


def test_gif_header_limit(tmp_path: Path) -> None:
    data = bytearray(image_bytes("GIF", (10, 10)))
    data[6:10] = struct.pack("<HH", 60000, 60000)
    with pytest.raises(ResultInvalid, match="60000x60000"):
        inspect_image(write(tmp_path, bytes(data)), MAX_PIXELS)


def test_format_mismatch_refused(tmp_path: Path) -> None:
    # PNG magic bytes, JPEG body: Pillow is only allowed to open it as PNG.
    data = b"\x89PNG\r\n\x1a\n" + image_bytes("JPEG")
    with pytest.raises(ResultInvalid):
        inspect_image(write(tmp_path, data), MAX_PIXELS)


def test_png_verification_memory_does_not_grow_with_chunk_size(tmp_path: Path) -> None:
    # One 8 MB IDAT chunk: Pillow's verify() would read it at once; ours does not.
    width = height = 2048
    raw = b"".join(b"\x00" + os.urandom(width) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw, 1))
        + png_chunk(b"IEND", b"")
    )
    del raw
    path = write(tmp_path, data, "big.png")
    size = len(data)
    del data
    assert size > 4 * 1024 * 1024

    tracemalloc.start()
    try:
        facts = inspect_image(path, MAX_PIXELS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert facts == ("png", width, height, "image/png")
    assert peak < 3 * 1024 * 1024, peak


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_image_size_reads_the_header_of_a_file_or_bytes(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (37, 21), (1, 2, 3)).save(buf, format=fmt)
    path = tmp_path / f"in.{fmt.lower()}"
    path.write_bytes(buf.getvalue())
    assert image_size(buf.getvalue()) == (37, 21)
    assert image_size(path) == (37, 21)


def test_image_size_is_none_for_what_is_not_a_readable_image() -> None:
    assert image_size(b"plain text, no image") is None
    assert image_size(b"\xff\xd8\xff" + bytes(64)) is None  # a JPEG start and nothing else
