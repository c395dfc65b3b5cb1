"""Input images uploaded by clients, kept until a provider has fetched them.

They live in a result storage of their own (a local directory, or a prefix of
the S3 bucket), so whichever web process a provider reaches can serve them.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.fetch.imagecheck import sniff_format
from orchestrator.results.spool import Opener, SpoolWriter, disk_error, open_part_file
from orchestrator.results.storage import ResultStorage, ResultStream
from schemas.api import StagedImage
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
    def __init__(
        self,
        storage: ResultStorage,
        spool: Path,
        *,
        max_bytes: int,
        opener: Opener = open_part_file,
    ) -> None:
        self.storage = storage
        self.spool = spool
        self.max_bytes = max_bytes
        self._opener = opener

    def check(self, data: bytes, what: str = "image") -> str:
        """The file extension for ``data``, or RejectedInput if it is not an image we take."""
        return self.check_head(data[:64], len(data), what)

    def check_head(self, head: bytes, size: int, what: str = "image") -> str:
        """The file extension for an image of ``size`` bytes that starts with ``head``
        (``what`` names it in the refusal: the image, or a replace job's mask)."""
        if size > self.max_bytes:
            raise PayloadTooLarge(f"{what} is larger than {self.max_bytes} bytes")
        fmt = sniff_format(head[:64])
        if fmt is None or fmt.upper() not in _EXT:
            raise RejectedInput(f"{what} is not a PNG, JPEG, WebP, GIF, BMP or TIFF file")
        return _EXT[fmt.upper()]

    def spool_writer(self, what: str = "image") -> SpoolWriter:
        """Where an upload is written as it arrives (``async with``; nothing left behind);
        ``what`` names it in a refusal."""
        return SpoolWriter(self.spool, max_bytes=self.max_bytes, opener=self._opener, what=what)

    async def save(self, stem: str, data: bytes) -> str:
        async with self.spool_writer() as writer:
            await writer.write(data)
            return await self.save_staged(stem, await writer.finish())

    async def save_staged(self, stem: str, staged: StagedImage) -> str:
        """Move a staged upload into the input store; its key."""
        key = f"{stem}.{self.check_head(staged.head, staged.size)}"
        try:
            await self.storage.put_file(staged.path, key)
        except OSError as exc:
            mapped = disk_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return key

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
