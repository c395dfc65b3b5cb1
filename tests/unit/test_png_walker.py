"""The streaming PNG check: fed in any slices, it decides as the whole-file walk does."""

from __future__ import annotations

import io
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from orchestrator.fetch.imagecheck import PngWalker
from schemas.errors import ResultInvalid


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


VALID = _png((23, 17))


def _walk(data: bytes, cuts: list[int]) -> str:
    """Feed ``data`` cut at ``cuts``; 'ok' or the refusal's message."""
    walker = PngWalker()
    try:
        start = 0
        for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
            walker.feed(data[start:cut])
            start = cut
        walker.finish()
    except ResultInvalid as exc:
        return str(exc)
    return "ok"


def _whole(data: bytes) -> str:
    return _walk(data, [])


@given(st.lists(st.integers(min_value=0), max_size=20))
def test_a_sound_png_passes_however_it_is_sliced(cuts: list[int]) -> None:
    assert _walk(VALID, cuts) == "ok"
    assert _walk(VALID + b"trailing bytes after IEND", cuts) == "ok"


@settings(max_examples=300)
@given(
    st.integers(min_value=0, max_value=len(VALID) - 1),
    st.integers(min_value=1, max_value=255),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_a_changed_byte_gets_the_same_answer_in_any_slices(
    at: int, flip: int, cuts: list[int]
) -> None:
    damaged = bytearray(VALID)
    damaged[at] ^= flip
    assert _walk(bytes(damaged), cuts) == _whole(bytes(damaged)) != "ok"


@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.lists(st.integers(), max_size=5))
def test_a_truncated_png_is_refused_in_any_slices(length: int, cuts: list[int]) -> None:
    answer = _walk(VALID[:length], cuts)
    assert answer != "ok" and answer == _whole(VALID[:length])


def test_the_refusals_say_what_is_wrong() -> None:
    assert _whole(b"GIF89a" + bytes(20)) == "result is not a png"
    assert _whole(VALID[:-12]) == "png result is truncated (no IEND chunk)"
    iend = VALID.index(b"IEND") - 4
    no_idat = bytearray(VALID[:33]) + VALID[iend:]  # signature + IHDR, then IEND
    assert _whole(bytes(no_idat)) == "png result has no image data"
    bad = bytearray(VALID)
    bad[VALID.index(b"IDAT") + 6] ^= 1  # inside the first IDAT chunk's data
    assert _whole(bytes(bad)).startswith("png result is corrupt (bad CRC in IDAT chunk)")
    assert zlib.crc32(b"IEND") == int.from_bytes(VALID[-4:], "big")
