"""Where checked result images live.

A stored result is addressed by a key such as ``<job_id>.png``: one flat
namespace, no directories, so a key can never escape the storage root.
:class:`LocalResultStorage` moves a finished temporary file into place with
``os.replace``, which is atomic on one filesystem: a reader sees either no
file or the whole file, never a partial one. Temporary files therefore belong
in ``root/.tmp/`` (:attr:`LocalResultStorage.tmp_dir`), next to their final
place; a file from elsewhere is copied there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["LocalResultStorage", "ResultStorage", "validate_key"]

logger = logging.getLogger(__name__)

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\Z")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe flat name (``abc-123.png``); ValueError otherwise."""
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid result key {key!r}")
    return key


class ResultStorage(Protocol):
    """What the fetcher and the result endpoint need from a result store."""

    async def put_file(self, tmp_path: Path, key: str) -> None:
        """Move the finished file at ``tmp_path`` into place under ``key`` (replacing)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def open(self, key: str) -> BinaryIO:
        """The stored bytes for reading; FileNotFoundError when there are none."""
        ...

    def path_for(self, key: str) -> Path:
        """The local file a key is served from (it may not exist)."""
        ...

    async def delete(self, key: str) -> None: ...


class LocalResultStorage:
    """Results as files in one directory, moved into place atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        return self.root / validate_key(key)

    async def put_file(self, tmp_path: Path, key: str) -> None:
        target = self.path_for(key)
        await asyncio.to_thread(self._put_file, tmp_path, target)
        logger.debug("stored result %s", key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def open(self, key: str) -> BinaryIO:
        path = self.path_for(key)
        return await asyncio.to_thread(_open_binary, path)

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(path.unlink, True)

    def _put_file(self, tmp_path: Path, target: Path) -> None:
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_into_place(tmp_path, target)
        _fsync_dir(self.root)

    def _copy_into_place(self, source: Path, target: Path) -> None:
        """``source`` is on another filesystem: copy next to ``target``, then rename."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=f"{target.name}.", suffix=".part")
        staged = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staged, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        source.unlink(missing_ok=True)


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


def _fsync_dir(path: Path) -> None:
    """Make the rename durable; best effort (not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
