"""An upload written to a private file as it arrives: capped, hashed, never held in memory.

:class:`SpoolWriter` takes the chunks of one upload, writes them in a worker
thread in blocks of about ``block_bytes`` (hashing on the way), and ends in a
:class:`schemas.api.StagedImage` the input store moves into place. Whatever
happens, nothing is left behind: on any error, and on leaving the ``async
with`` block, the part file is removed (after a successful move it is already
gone). A full or unwritable disk is :class:`InsufficientStorage`, not a 500.

The file is opened through ``opener`` (a seam: tests pass one that fails the
way a full disk does).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, ParamSpec, Self, TypeVar

from orchestrator.security.private_files import create_private_file, make_private_dir
from schemas.api import StagedImage
from schemas.errors import InsufficientStorage, PayloadTooLarge

HEAD_BYTES = 64
BLOCK_BYTES = 1 << 20
_DISK_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)

P = ParamSpec("P")
T = TypeVar("T")
Opener = Callable[[Path], tuple[Path, BinaryIO]]


def open_part_file(directory: Path) -> tuple[Path, BinaryIO]:
    """A new private ``.part`` file in ``directory`` (created 0700 if missing)."""
    make_private_dir(directory)
    path = directory / f".upload-{secrets.token_hex(8)}.part"
    fd = create_private_file(path)
    return path, os.fdopen(fd, "wb", buffering=0)


def disk_error(exc: OSError) -> InsufficientStorage | None:
    """The InsufficientStorage an OSError means, or None for any other failure."""
    if exc.errno in _DISK_ERRORS:
        return InsufficientStorage("no room to store the upload now; try again later")
    return None


class SpoolWriter:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        opener: Opener = open_part_file,
        block_bytes: int = BLOCK_BYTES,
        what: str = "image",
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.what = what  # names the upload in the refusal: the image, or a mask
        self._opener = opener
        self._block_bytes = block_bytes
        self._path: Path | None = None
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._size = 0
        self._head = b""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self._discard)

    @property
    def size(self) -> int:
        return self._size

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._size += len(chunk)
        if self._size > self.max_bytes:
            raise PayloadTooLarge(f"{self.what} is larger than {self.max_bytes} bytes")
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= self._block_bytes:
            await self._flush()

    async def _open(self) -> tuple[Path, BinaryIO]:
        """The part file and its path, created on first use (a body without an upload
        creates none)."""
        if self._path is not None and self._file is not None:
            return self._path, self._file
        path, file = await self._io(self._opener, self.directory)
        self._path, self._file = path, file
        return path, file

    async def finish(self) -> StagedImage:
        """Everything written and closed: the staged image (its file still ours until moved)."""
        await self._flush()
        path, file = await self._open()
        await self._io(file.close)
        return StagedImage(
            path=path, size=self._size, sha256=self._hash.hexdigest(), head=self._head
        )

    async def _flush(self) -> None:
        if not self._pending:
            return
        block = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        _, file = await self._open()
        await self._io(self._write_block, file, block)

    def _write_block(self, file: BinaryIO, block: bytes) -> None:
        self._hash.update(block)
        view = memoryview(block)
        while view:
            written = file.write(view)
            view = view[written or 0 :]

    async def _io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except OSError as exc:
            mapped = disk_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _discard(self) -> None:
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
