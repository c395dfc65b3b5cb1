"""Input images uploaded by clients, kept until a provider has fetched them."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from orchestrator.fetch.imagecheck import sniff_format
from schemas.errors import NotFound, PayloadTooLarge, RejectedInput

_KEY = re.compile(r"^[A-Za-z0-9_]+\.(png|jpg|webp|gif|bmp|tiff)$")
_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}
CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}


class InputStore:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def check(self, data: bytes) -> str:
        """The file extension for ``data``, or RejectedInput if it is not an image we take."""
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"image is larger than {self.max_bytes} bytes")
        fmt = sniff_format(data[:64])
        if fmt is None or fmt.upper() not in _EXT:
            raise RejectedInput("image is not a PNG, JPEG, WebP, GIF, BMP or TIFF file")
        return _EXT[fmt.upper()]

    async def save(self, stem: str, data: bytes) -> str:
        ext = self.check(data)
        key = f"{stem}.{ext}"
        await asyncio.to_thread(self._write, key, data)
        return key

    def _write(self, key: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.root / key)

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise NotFound("no such input")
        path = self.root / key
        if not path.is_file():
            raise NotFound("no such input")
        return path

    async def discard(self, key: str) -> None:
        await asyncio.to_thread((self.root / key).unlink, True)

    @staticmethod
    def content_type(key: str) -> str:
        return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
