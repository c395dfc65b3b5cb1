"""The upload spool: capped, hashed, private, and nothing left behind when a write fails."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from orchestrator.results.spool import SpoolWriter, open_part_file
from schemas.errors import InsufficientStorage, PayloadTooLarge


class FullDisk(io.RawIOBase):
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def full_disk_opener(room: int):  # type: ignore[no-untyped-def]
    def opener(directory: Path) -> tuple[Path, BinaryIO]:
        path, real = open_part_file(directory)
        real.close()
        return path, FullDisk(room)  # type: ignore[return-value]

    return opener


async def test_a_full_disk_is_insufficient_storage_and_the_part_file_is_removed(
    tmp_path: Path,
) -> None:
    writer = SpoolWriter(tmp_path, max_bytes=10 << 20, opener=full_disk_opener(1 << 20))
    with pytest.raises(InsufficientStorage):
        async with writer:
            for _ in range(4):
                await writer.write(os.urandom(1 << 20))
            await writer.finish()
    assert list(tmp_path.iterdir()) == []


async def test_an_upload_over_the_cap_is_refused_and_removed(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, max_bytes=1000, block_bytes=100)
    with pytest.raises(PayloadTooLarge):
        async with writer:
            for _ in range(20):
                await writer.write(b"x" * 100)
    assert list(tmp_path.iterdir()) == []


async def test_a_finished_upload_is_private_hashed_and_complete(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    old = os.umask(0)
    try:
        async with SpoolWriter(tmp_path / "spool", max_bytes=10 << 20) as writer:
            for i in range(0, len(data), 65536):
                await writer.write(data[i : i + 65536])
            staged = await writer.finish()
            assert staged.path.read_bytes() == data
            assert (staged.size, staged.head) == (len(data), data[:64])
            assert staged.sha256 == hashlib.sha256(data).hexdigest()
            assert staged.path.stat().st_mode & 0o777 == 0o600
            assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
        assert not staged.path.exists()
    finally:
        os.umask(old)
