"""Input images uploaded by clients, kept until a provider has fetched them.

They live in a result storage of their own (a local directory, or a prefix of
the S3 bucket), so whichever web process a provider reaches can serve them.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from orchestrator.fetch.imagecheck import sniff_format
from orchestrator.results import ResultStorage, ResultStream
from schemas.errors import NotFound, PayloadTooLarge, RejectedInput

_KEY = re.compile(r"[A-Za-z0-9_]+\.(png|jpg|webp|gif|bmp|tiff)")
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
    def __init__(self, storage: ResultStorage, spool: Path, *, max_bytes: int) -> None:
        self.storage = storage
        self.spool = spool
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
        key = f"{stem}.{self.check(data)}"
        tmp = await asyncio.to_thread(self._spool, data)
        try:
            await self.storage.put_file(tmp, key)
        finally:
            await asyncio.to_thread(tmp.unlink, True)
        return key

    def _spool(self, data: bytes) -> Path:
        self.spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.spool, prefix=".input-", suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return Path(name)

    async def open(self, key: str) -> ResultStream:
        """A stream of the input's bytes; NotFound for unknown or malformed keys."""
        if not _KEY.fullmatch(key):
            raise NotFound("no such input")
        try:
            return await self.storage.read_stream(key)
        except FileNotFoundError:
            raise NotFound("no such input") from None

    async def read(self, key: str) -> bytes:
        async with await self.open(key) as stream:
            return b"".join([chunk async for chunk in stream])

    async def discard(self, key: str) -> None:
        await self.storage.delete(key)

    @staticmethod
    def content_type(key: str) -> str:
        return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
