"""Is a downloaded file really an image we accept, and how big is it?

Results can be hundreds of megabytes, so nothing here decodes pixels:

* :func:`sniff_format` looks at the magic bytes only;
* :func:`image_size` reads an input's dimensions from its header alone;
* :func:`inspect_image` reads the dimensions from the header (our own parse
  for PNG, GIF, WEBP and BMP, so an oversized canvas is refused before
  Pillow allocates anything), opens the file with Pillow restricted to the
  sniffed format (header only), checks ``width * height`` against
  ``max_pixels``, and verifies integrity without decoding: for PNG we walk
  the chunks and check every CRC in fixed-size blocks (Pillow's own
  ``verify()`` reads each chunk into memory at once), for the others
  Pillow's ``verify()``.

Pillow's global ``Image.MAX_IMAGE_PIXELS`` still applies on top: its
``DecompressionBombError`` (and the warning, when warnings are errors) is
reported as :class:`ResultInvalid` like our own limit. Caveat: Pillow's
WEBP plugin reads the whole file into memory to open it (bounded by the
download cap), after our header check has bounded the canvas.

Everything is synchronous; callers run :func:`inspect_image` in a thread.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from schemas.errors import ResultInvalid

__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "SNIFF_BYTES",
    "ImageFacts",
    "extension_for",
    "image_size",
    "inspect_image",
    "sniff_format",
    "sniff_image",
]

SNIFF_BYTES = 16
"""How many leading bytes :func:`sniff_format` needs to decide."""

_HEADER_BYTES = 64
_VERIFY_BLOCK = 1 << 20

CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
}
EXTENSIONS = {
    "png": "png",
    "jpeg": "jpg",
    "webp": "webp",
    "gif": "gif",
    "tiff": "tiff",
    "bmp": "bmp",
}
# Our format name -> the Pillow plugins allowed to open it.
_PILLOW_FORMATS: dict[str, tuple[str, ...]] = {
    "png": ("PNG",),
    "jpeg": ("JPEG",),
    "webp": ("WEBP",),
    "gif": ("GIF",),
    "tiff": ("TIFF",),
    "bmp": ("BMP",),
}
# Pillow's format name -> ours (a JPEG with several pictures opens as MPO).
_FROM_PILLOW = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "GIF": "gif"}
_FROM_PILLOW |= {"TIFF": "tiff", "BMP": "bmp"}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageFacts(NamedTuple):
    """What :func:`inspect_image` found: ``(format, width, height, content_type)``."""

    format: str
    width: int
    height: int
    content_type: str

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]


def extension_for(fmt: str) -> str:
    """The file extension we store a format under (``jpeg`` -> ``jpg``)."""
    return EXTENSIONS[fmt]


# The one table of magic bytes: (bytes, offset, format). WebP also needs "RIFF" first.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (PNG_MAGIC, 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"II+\x00", 0, "tiff"),
    (b"MM\x00+", 0, "tiff"),
    (b"BM", 0, "bmp"),
    (b"ftypavif", 4, "avif"),
    (b"ftypheic", 4, "heic"),
)
MEDIA_TYPES = CONTENT_TYPES | {"avif": "image/avif", "heic": "image/heic"}
"""Every format :func:`sniff_image` knows -> its media type."""
_BMP_HEADER_BYTES = 14


def sniff_image(head: bytes) -> str | None:
    """Any image format the leading bytes announce (avif and heic too), or None."""
    for magic, offset, fmt in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            if fmt == "webp" and not head.startswith(b"RIFF"):
                continue
            return fmt
    return None


def sniff_format(head: bytes) -> str | None:
    """The image format the leading bytes announce, or None (give at least SNIFF_BYTES).

    Only formats this module can check (not avif, heic), and a BMP only with its
    whole file header.
    """
    fmt = sniff_image(head)
    if fmt not in _PILLOW_FORMATS:
        return None
    if fmt == "bmp" and len(head) < _BMP_HEADER_BYTES:
        return None
    return fmt


def inspect_image(path: Path, max_pixels: int, *, png_walked: bool = False) -> ImageFacts:
    """Check that ``path`` is a sound image of at most ``max_pixels``; never decodes pixels.

    ``png_walked``: its bytes already went through a :class:`PngWalker` on their
    way to the file, so a PNG's chunks are not read back. Raises
    :class:`ResultInvalid` for anything else.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER_BYTES)
    except OSError as exc:
        raise ResultInvalid(f"cannot read the result file: {exc.strerror}") from exc
    if not head:
        raise ResultInvalid("result is empty")
    fmt = sniff_format(head)
    if fmt is None:
        raise ResultInvalid("result is not an image (unrecognised magic bytes)")
    declared = _header_size(fmt, head)
    if declared is not None:
        _check_size(fmt, *declared, max_pixels)

    width, height = _open_and_verify(path, fmt, walk_png=not png_walked)
    _check_size(fmt, width, height, max_pixels)
    return ImageFacts(fmt, width, height, CONTENT_TYPES[fmt])


def image_size(source: Path | bytes) -> tuple[int, int] | None:
    """The width and height an image's header announces (a file, or bytes), or None
    when it is not an image we take or its header cannot be read. Decodes no pixels:
    our own parse for PNG, GIF, BMP and WEBP, else Pillow's lazy open."""
    try:
        target: Path | io.BytesIO
        if isinstance(source, bytes):
            head, target = source[:_HEADER_BYTES], io.BytesIO(source)
        else:
            with source.open("rb") as fh:
                head = fh.read(_HEADER_BYTES)
            target = source
        fmt = sniff_format(head)
        if fmt is None:
            return None
        declared = _header_size(fmt, head)
        if declared is not None:
            return declared if declared[0] > 0 and declared[1] > 0 else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(target, formats=_PILLOW_FORMATS[fmt]) as img:
                width, height = img.size
    except Exception:  # any failure to read untrusted bytes: not a readable image
        return None
    return (width, height) if width > 0 and height > 0 else None


def _open_and_verify(path: Path, fmt: str, *, walk_png: bool) -> tuple[int, int]:
    try:
        with Image.open(path, formats=_PILLOW_FORMATS[fmt]) as img:
            opened = _FROM_PILLOW.get(img.format or "")
            size = img.size
            if opened != fmt:
                raise ResultInvalid(f"result claims to be {fmt} but reads as {img.format}")
            if fmt != "png":
                img.verify()
    except ResultInvalid:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ResultInvalid(f"{fmt} result refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ResultInvalid(f"{fmt} result is not a readable image") from exc
    except Exception as exc:  # any other parse failure on untrusted bytes
        detail = str(exc).replace(str(path), "<file>")  # no local paths in messages
        raise ResultInvalid(f"{fmt} result is not a readable image: {detail}") from exc
    if fmt == "png" and walk_png:
        _verify_png(path)
    return size


def _check_size(fmt: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ResultInvalid(f"{fmt} result has invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ResultInvalid(
            f"{fmt} result of {width}x{height} pixels exceeds the limit of {max_pixels} pixels"
        )


def _header_size(fmt: str, head: bytes) -> tuple[int, int] | None:
    """Dimensions announced by the header, for the formats where that is cheap."""
    try:
        if fmt == "png" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return int(width), int(height)
        if fmt == "gif":
            width, height = struct.unpack("<HH", head[6:10])
            return int(width), int(height)
        if fmt == "bmp":
            header_size = struct.unpack("<I", head[14:18])[0]
            if header_size == 12:  # OS/2 BITMAPCOREHEADER
                width, height = struct.unpack("<HH", head[18:22])
                return int(width), int(height)
            width, height = struct.unpack("<ii", head[18:26])
            return int(width), abs(int(height))
        if fmt == "webp":
            return _webp_size(head)
    except struct.error:
        return None
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L" and head[20:21] == b"\x2f":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _verify_png(path: Path) -> None:
    """Walk every chunk and check its CRC, reading in fixed-size blocks."""
    walker = PngWalker()
    try:
        with path.open("rb") as fh:
            while block := fh.read(_VERIFY_BLOCK):
                walker.feed(block)
                if walker.done:
                    break
    except OSError as exc:
        raise ResultInvalid(f"cannot read the result file: {exc.strerror}") from exc
    walker.finish()


class PngWalker:
    """Checks a PNG's chunk structure and every chunk's CRC from its bytes, fed in
    slices of any size as they arrive (a download need not be read back to be
    checked). Bytes after the IEND chunk are ignored. Raises ResultInvalid."""

    _MAGIC, _HEADER, _DATA, _CRC, _DONE = range(5)

    def __init__(self) -> None:
        self._state = self._MAGIC
        self._need = len(PNG_MAGIC)  # bytes of the magic, a chunk header or a CRC
        self._small = bytearray()
        self._kind = b""
        self._crc = 0
        self._remaining = 0
        self._seen_idat = False

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end and self._state != self._DONE:
            if self._state == self._DATA:
                take = min(self._remaining, end - pos)
                self._crc = zlib.crc32(view[pos : pos + take], self._crc)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._expect(self._CRC, 4)
                continue
            take = min(self._need - len(self._small), end - pos)
            self._small += view[pos : pos + take]
            pos += take
            if len(self._small) == self._need:
                self._complete(bytes(self._small))

    def finish(self) -> None:
        """All bytes were fed: the image must have ended properly."""
        if self._state == self._MAGIC:
            raise ResultInvalid("result is not a png")
        if self._state == self._HEADER:
            raise ResultInvalid("png result is truncated (no IEND chunk)")
        if self._state != self._DONE:
            raise ResultInvalid("png result is truncated")
        if not self._seen_idat:
            raise ResultInvalid("png result has no image data")

    def _expect(self, state: int, need: int) -> None:
        self._state, self._need = state, need
        self._small.clear()

    def _complete(self, small: bytes) -> None:
        if self._state == self._MAGIC:
            if small != PNG_MAGIC:
                raise ResultInvalid("result is not a png")
            self._expect(self._HEADER, 8)
        elif self._state == self._HEADER:
            length, kind = struct.unpack(">I4s", small)
            if length > 0x7FFFFFFF or not kind.isalpha():
                raise ResultInvalid("png result has a malformed chunk")
            self._kind, self._crc, self._remaining = kind, zlib.crc32(kind), length
            if length:
                self._expect(self._DATA, 0)
            else:
                self._expect(self._CRC, 4)
        else:  # the CRC
            if int.from_bytes(small, "big") != self._crc:
                kind = self._kind.decode()
                raise ResultInvalid(f"png result is corrupt (bad CRC in {kind} chunk)")
            if self._kind == b"IDAT":
                self._seen_idat = True
            if self._kind == b"IEND":
                self._expect(self._DONE, 0)
            else:
                self._expect(self._HEADER, 8)
